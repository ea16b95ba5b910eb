//! What ends a job from outside its component: the job's deadline (`--timeout`), the stall
//! limit (`--stall-limit`: no progress however many calls the component makes), and a
//! cancellation (Ctrl-C, or a caller of the job API). One [`JobClock`] is started per job and
//! shared by all its instances, so every database of the job works to the same deadline; every
//! call into a component races it.

use crate::capability::guard::Activity;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a job was ended from outside the component. The messages name the flag that sets the
/// limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ended {
    #[error("the migration job exceeded its time limit of {0} s (--timeout)")]
    TimedOut(u64),
    #[error(
        "the migration component made no progress for {0} s: no rows moved and no long-running statement (--stall-limit)"
    )]
    Stalled(u64),
    #[error("the migration job was cancelled")]
    Cancelled,
}

/// A cancellation a job's owner can trigger from anywhere; clones share it.
#[derive(Clone, Debug)]
pub struct Cancel(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Cancel {
    fn default() -> Self {
        Cancel(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Cancel {
    /// Cancel the job: it stops at its next step, removes what it created and ends its
    /// server-side work.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the job is cancelled.
    pub async fn cancelled(&self) {
        let mut seen = self.0.subscribe();
        let _ = seen.wait_for(|cancelled| *cancelled).await;
    }
}

/// A job's deadline, stall limit and cancellation.
#[derive(Clone, Debug)]
pub struct JobClock {
    deadline: Option<Instant>,
    timeout_seconds: u64,
    stall_seconds: u64,
    cancel: Cancel,
}

impl JobClock {
    /// Start the clock of a job with these limits (0 seconds: no such limit).
    pub fn start(timeout_seconds: u64, stall_seconds: u64, cancel: Cancel) -> JobClock {
        let deadline = (timeout_seconds > 0).then(|| Instant::now() + Duration::from_secs(timeout_seconds));
        JobClock { deadline, timeout_seconds, stall_seconds, cancel }
    }

    /// Whether the job must end now, and why.
    pub fn check(&self, activity: &Activity) -> Option<Ended> {
        if self.cancel.is_cancelled() {
            return Some(Ended::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(Ended::TimedOut(self.timeout_seconds));
        }
        if self.stall_seconds > 0 && activity.idle_for() >= Duration::from_secs(self.stall_seconds) {
            return Some(Ended::Stalled(self.stall_seconds));
        }
        None
    }

    /// Resolves when the job must end, with the reason; raced against every call into the
    /// component, whose `activity` it watches.
    pub async fn ended(&self, activity: &Activity) -> Ended {
        loop {
            if let Some(ended) = self.check(activity) {
                return ended;
            }
            // Wake at the deadline or when the stall limit would be reached at the earliest
            // (progress in between only moves that later), or on a cancellation.
            let mut wake = Instant::now() + Duration::from_secs(3600);
            if let Some(deadline) = self.deadline {
                wake = wake.min(deadline);
            }
            if self.stall_seconds > 0 {
                let left = Duration::from_secs(self.stall_seconds).saturating_sub(activity.idle_for());
                wake = wake.min(Instant::now() + left.max(Duration::from_millis(10)));
            }
            tokio::select! {
                _ = self.cancel.cancelled() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancellation_ends_the_watch_at_once() {
        let cancel = Cancel::default();
        let clock = JobClock::start(0, 0, cancel.clone());
        let activity = Activity::new();
        assert_eq!(clock.check(&activity), None);
        let watching = tokio::spawn({
            let clock = clock.clone();
            async move { clock.ended(&Activity::new()).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(5), watching).await.unwrap().unwrap();
        assert_eq!(ended, Ended::Cancelled);
    }

    #[tokio::test]
    async fn the_deadline_and_the_stall_limit_end_the_watch() {
        let clock = JobClock::start(1, 0, Cancel::default());
        let started = Instant::now();
        assert_eq!(clock.ended(&Activity::new()).await, Ended::TimedOut(1));
        assert!(started.elapsed() >= Duration::from_secs(1) && started.elapsed() < Duration::from_secs(3));

        let clock = JobClock::start(0, 1, Cancel::default());
        let activity = Activity::new();
        let started = Instant::now();
        assert_eq!(clock.ended(&activity).await, Ended::Stalled(1));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(Ended::Stalled(60).to_string().contains("(--stall-limit)"));
    }
}
