//! Keeping the event loop free: JSON larger than [`INLINE_JSON_BYTES`] is parsed, checked and
//! written on tokio's blocking pool, so that one large body does not hold up every other
//! callback's timer for the milliseconds it takes.

use tokio::time::Instant;

/// JSON larger than this is handled on tokio's blocking pool. OpenIM's bodies are a few
/// hundred bytes.
pub(super) const INLINE_JSON_BYTES: usize = 64 * 1024;

/// Runs `work` inline when `size` is small, else on the blocking pool, never waiting past
/// `deadline` (then `None`). A panic in `work` goes on as a panic in the caller, where the
/// router's panic layer answers the default decision.
pub(super) async fn off_loop<T: Send + 'static>(
    size: usize,
    deadline: Instant,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if size <= INLINE_JSON_BYTES {
        return Some(work());
    }
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(work)).await {
        Ok(joined) => finished(joined),
        Err(_) => None,
    }
}

/// Starts `work` on the blocking pool now when `size` is large, so that its result is ready
/// when it is needed; `None` when `size` is small enough to do it inline later.
pub(super) fn start_off_loop<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<tokio::task::JoinHandle<T>> {
    (size > INLINE_JSON_BYTES).then(|| tokio::task::spawn_blocking(work))
}

/// The value of finished blocking work; its panic goes on in the caller.
pub(super) fn finished<T>(joined: Result<T, tokio::task::JoinError>) -> Option<T> {
    match joined {
        Ok(value) => Some(value),
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: only at runtime shutdown.
            Err(_) => None,
        },
    }
}
