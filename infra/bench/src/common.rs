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
