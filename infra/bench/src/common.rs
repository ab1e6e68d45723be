//! What every part of the bench uses: where the project is, progress
//! lines, milliseconds and percentiles, a function's sizing from
//! template.yaml.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The project's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A progress line.
pub fn say(step: &str) {
    eprintln!("paygate-bench: {step}");
}

/// Milliseconds, to two decimals.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// The nearest-rank percentile `p` of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// How long the intervals `spans` cover, each instant once: the time a
/// function spent waiting on calls, some of them side by side.
pub fn overlapped(spans: &[(std::time::Instant, std::time::Instant)]) -> Duration {
    let mut sorted = spans.to_vec();
    sorted.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(std::time::Instant, std::time::Instant)> = None;
    for (start, end) in sorted {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(Duration::ZERO, |(s, e)| e - s)
}

/// Memory and timeout of a function from template.yaml (Globals as default).
pub fn sizing(template: &serde_yaml::Value, binary: &str) -> (u32, Duration) {
    let globals = &template["Globals"]["Function"];
    let memory = globals["MemorySize"].as_u64().unwrap_or(128);
    let timeout = globals["Timeout"].as_u64().unwrap_or(15);
    let function = template["Resources"]
        .as_mapping()
        .and_then(|m| {
            m.values()
                .find(|r| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        })
        .map(|r| &r["Properties"]);
    let memory = function
        .and_then(|p| p["MemorySize"].as_u64())
        .unwrap_or(memory) as u32;
    let timeout = function
        .and_then(|p| p["Timeout"].as_u64())
        .unwrap_or(timeout);
    (memory, Duration::from_secs(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&d, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&d[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn overlapping_spans_count_once() {
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Two side by side (0-5, 1-7), a gap, then one alone (10-20).
        let spans = [(at(10), at(20)), (at(0), at(5)), (at(1), at(7))];
        assert_eq!(overlapped(&spans), Duration::from_millis(17));
        assert_eq!(overlapped(&[]), Duration::ZERO);
        assert_eq!(overlapped(&[(at(3), at(3))]), Duration::ZERO);
    }

    #[test]
    fn sizing_reads_the_template() {
        let t: serde_yaml::Value = serde_yaml::from_str(
            "Globals: {Function: {MemorySize: 128, Timeout: 15}}\n\
             Resources: {A: {Metadata: {BuildProperties: {Binary: a}}, Properties: {Timeout: 10}}}",
        )
        .unwrap();
        assert_eq!(sizing(&t, "a"), (128, Duration::from_secs(10)));
        assert_eq!(sizing(&t, "b"), (128, Duration::from_secs(15)));
    }
}
