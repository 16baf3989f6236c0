//! The one shutdown path of every Mentorstream process.
//!
//! A [`Shutdown`] owns the root of a cancellation tree and a tracker of the tasks that must
//! finish before the process exits. Components take a child [`CancellationToken`]: when it is
//! cancelled they stop taking new work (intake), finish what is in flight (drain), commit their
//! offsets and return. [`Shutdown::drain`] then waits for every tracked task within a bound.

use std::future::Future;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
#[error("{pending} task(s) still running after the {bound:?} shutdown bound")]
pub struct DrainTimeout {
    pub pending: usize,
    pub bound: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled when shutdown begins. Cancelling it does not shut down the rest.
    pub fn token(&self) -> CancellationToken {
        self.token.child_token()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Begins shutdown: every token handed out is cancelled.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Resolves once shutdown has begun.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// Runs `task` to completion as part of the process: [`Shutdown::drain`] waits for it.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Triggers shutdown on SIGINT or SIGTERM. Spawned, not tracked: it never finishes by itself.
    pub fn trigger_on_signals(&self) {
        let token = self.token.clone();
        tokio::spawn(async move {
            tokio::select! {
                signal = wait_for_signal() => {
                    tracing::info!(signal, "shutdown requested");
                    token.cancel();
                }
                () = token.cancelled() => {}
            }
        });
    }

    /// Waits for every tracked task, at most `bound` after shutdown has begun.
    pub async fn drain(&self, bound: Duration) -> Result<(), DrainTimeout> {
        self.tasks.close();
        match tokio::time::timeout(bound, self.tasks.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(DrainTimeout {
                pending: self.tasks.len(),
                bound,
            }),
        }
    }
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};

    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; shutdown only on request");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tasks_that_observe_the_token() {
        let shutdown = Shutdown::new();
        let token = shutdown.token();
        let finished = shutdown.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            "committed"
        });
        shutdown.trigger();
        shutdown
            .drain(Duration::from_secs(1))
            .await
            .expect("drains");
        assert_eq!(finished.await.expect("joins"), "committed");
    }

    #[tokio::test(start_paused = true)]
    async fn drain_reports_tasks_past_the_bound() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending::<()>());
        shutdown.trigger();
        let err = shutdown
            .drain(Duration::from_secs(2))
            .await
            .expect_err("a stuck task is reported");
        assert_eq!(err.pending, 1);
        assert_eq!(
            err.to_string(),
            "1 task(s) still running after the 2s shutdown bound"
        );
    }
}
