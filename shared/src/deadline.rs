//! The invocation's deadline, for every provider call made while handling
//! it: each function's `main` runs its handler [`within`] the deadline the
//! Lambda context gives, and the providers' transport (`ProviderHttp`) asks
//! [`remaining`] before each attempt and bounds the attempt by it. So a
//! slow provider ends in our own "the provider did not answer" (a typed
//! error, the request's records kept), never in a Lambda timeout that
//! leaves a half-done request behind.

use std::future::Future;
use std::time::{Duration, Instant};

/// Kept back from the Lambda deadline for what follows a provider call:
/// recording its outcome and answering.
pub const MARGIN: Duration = Duration::from_secs(2);

/// An attempt is not started with less than this left: it could only end
/// as a timeout after the request had left (an unknown outcome).
pub const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// A call that must not be repeated (a transfer, a create the provider
/// does not deduplicate) starts only with this much left, or its whole
/// timeout if shorter: cut short by our own deadline it would be an
/// unknown outcome for a person, where not sending is a clean retry later.
pub const MIN_UNREPEATABLE: Duration = Duration::from_secs(5);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Time left until `deadline_ms` (epoch milliseconds, the Lambda context's
/// deadline), or `None` when it is no real deadline: one already past when
/// the invocation starts is an emulator's placeholder (`cargo lambda
/// watch` sends a constant 600000, ten minutes after 1970), never
/// Lambda's, whose deadline is the function's timeout ahead.
pub fn left_of(deadline_ms: u64) -> Option<Duration> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    (deadline_ms > now_ms).then(|| Duration::from_millis(deadline_ms - now_ms))
}

/// Runs `work` with provider calls bounded by `deadline_ms` (epoch
/// milliseconds, the Lambda context's deadline) less [`MARGIN`]; unbounded
/// when it is no real deadline ([`left_of`]).
pub async fn within<F: Future>(deadline_ms: u64, work: F) -> F::Output {
    let Some(left) = left_of(deadline_ms) else {
        return work.await;
    };
    // Lambda's deadlines are at most 15 minutes ahead; a day bounds any
    // other value without overflowing the clock.
    let left = left.saturating_sub(MARGIN).min(Duration::from_secs(86_400));
    DEADLINE.scope(Instant::now() + left, work).await
}

/// The Lambda deadline (epoch milliseconds) of an HTTP API request; 0 (no
/// deadline, see [`left_of`]) outside Lambda, for a request built in a test.
pub fn of_request(req: &lambda_http::Request) -> u64 {
    use lambda_http::RequestExt;
    req.lambda_context_ref().map_or(0, |c| c.deadline)
}

/// Runs `work` with provider calls bounded by `left` from now (tests, and
/// callers that set their own budget).
pub async fn within_duration<F: Future>(left: Duration, work: F) -> F::Output {
    DEADLINE.scope(Instant::now() + left, work).await
}

/// Time left for provider calls in this invocation; `None` outside one.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|d| d.saturating_duration_since(Instant::now()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_is_the_contexts_less_the_margin_and_only_inside() {
        assert_eq!(remaining(), None);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = within(now_ms + 10_000, async { remaining() })
            .await
            .unwrap();
        assert!(
            left <= Duration::from_secs(8) && left > Duration::from_secs(7),
            "{left:?}"
        );
        // Less than the margin left: calls get nothing.
        let short = within(now_ms + 1_000, async { remaining() }).await;
        assert_eq!(short, Some(Duration::ZERO));
        // A deadline already past is an emulator's placeholder: unbounded.
        let placeholder = within(600_000, async { remaining() }).await;
        assert_eq!(placeholder, None);
        assert_eq!(remaining(), None);
    }
}
