//! The shutdown signal: a future that completes on SIGINT or SIGTERM.
//!
//! It only waits; what shutting down means (drain, let replies finish, flush) belongs to
//! [`crate::Worker::serve`], which takes any future as its shutdown trigger so tests can use
//! their own.

/// Completes when the process receives SIGINT (Ctrl-C) or SIGTERM (what container runtimes and
/// process supervisors send). If a handler cannot be installed, that signal is logged and never
/// fires, and the other one still works.
pub async fn signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = terminate();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

#[cfg(unix)]
async fn terminate() {
    use tokio::signal::unix::{signal, SignalKind};

    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            terminate.recv().await;
        }
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
        }
    }
}

/// Elsewhere there is no SIGTERM; Ctrl-C is the only signal.
#[cfg(not(unix))]
async fn terminate() {
    std::future::pending::<()>().await;
}
