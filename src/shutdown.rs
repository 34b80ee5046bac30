//! One shutdown for the daemon, in three moments: a stop is requested (SIGTERM, Ctrl-C), the
//! services wind down (once the receive loop has ended, whether asked to or because `--once`
//! drained the queue), and the grace period runs out (work in flight stops at its next step,
//! its message handed back to the queue).

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Shutdown {
    requested: CancellationToken,
    /// A child of `requested`: a requested stop winds the services down too.
    winding_down: CancellationToken,
    overdue: CancellationToken,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let requested = CancellationToken::new();
        Shutdown {
            winding_down: requested.child_token(),
            requested,
            overdue: CancellationToken::new(),
        }
    }

    /// Stop receiving; finish what is in flight within the grace period.
    pub fn request(&self) {
        self.requested.cancel();
    }

    /// Fires when a stop is requested.
    pub fn requested(&self) -> CancellationToken {
        self.requested.clone()
    }

    /// The receive loop has ended: the approvals worker, the watchers, the HTTP server and the
    /// credentials check stop.
    pub fn wind_down(&self) {
        self.winding_down.cancel();
    }

    /// Fires when a stop is requested or the receive loop has ended.
    pub fn winding_down(&self) -> CancellationToken {
        self.winding_down.clone()
    }

    /// The grace period is over: work in flight stops at its next step.
    pub fn give_up(&self) {
        self.overdue.cancel();
    }

    /// Fires when the grace period is over.
    pub fn overdue(&self) -> CancellationToken {
        self.overdue.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_winds_down_but_is_not_overdue() {
        let shutdown = Shutdown::new();
        shutdown.request();
        assert!(shutdown.requested().is_cancelled());
        assert!(shutdown.winding_down().is_cancelled());
        assert!(!shutdown.overdue().is_cancelled());
    }

    #[test]
    fn a_drained_queue_winds_down_without_a_request() {
        let shutdown = Shutdown::new();
        shutdown.wind_down();
        assert!(shutdown.winding_down().is_cancelled());
        assert!(!shutdown.requested().is_cancelled());
        shutdown.give_up();
        assert!(shutdown.overdue().is_cancelled());
    }
}
