//! The checks every database call of a component passes before it reaches a backend: the call
//! counts as the component's activity (the sandbox's CPU limit measures compute between host
//! calls, its stall limit the time without [`Activity`] progress), and a handle that a cursor or
//! COPY still holds is refused, since anything else sent on its connection would wait forever
//! behind the stream.

use crate::wit::{DbError, ErrorKind};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A database call at least this long is real work on the server (an index build, a large
/// count): it is progress, whatever it returns.
pub const LONG_CALL: Duration = Duration::from_secs(1);

/// When the component last made progress: rows moved through a cursor or a bulk load, or a
/// database call that ran [`LONG_CALL`] or longer. Cheap calls in a loop are not progress. The
/// sandbox's watch reads it from another task while a call is in flight.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last progress.
    last_progress: AtomicU64,
    /// Milliseconds from `origin` to the start of the call in flight, plus one; 0: none.
    in_flight_since: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            origin: Instant::now(),
            last_progress: AtomicU64::new(0),
            in_flight_since: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// The component made progress now.
    pub fn progressed(&self) {
        self.last_progress.store(self.now_ms(), Ordering::Relaxed);
    }

    fn call_started(&self) {
        self.in_flight_since.store(self.now_ms() + 1, Ordering::Relaxed);
    }

    fn call_ended(&self) {
        let since = self.in_flight_since.swap(0, Ordering::Relaxed);
        if since > 0 && self.now_ms().saturating_sub(since - 1) >= LONG_CALL.as_millis() as u64 {
            self.progressed();
        }
    }

    /// How long the component has gone without progress. A call in flight for
    /// [`LONG_CALL`] or longer is progress while it runs.
    pub fn idle_for(&self) -> Duration {
        let now = self.now_ms();
        let since = self.in_flight_since.load(Ordering::Relaxed);
        if since > 0 && now.saturating_sub(since - 1) >= LONG_CALL.as_millis() as u64 {
            return Duration::ZERO;
        }
        Duration::from_millis(now.saturating_sub(self.last_progress.load(Ordering::Relaxed)))
    }
}

/// One database call in flight; its end is recorded when it is dropped.
#[must_use = "the call lasts as long as this value"]
pub struct Call(Arc<Activity>);

impl Drop for Call {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

/// Host calls counted so far, the handles a stream holds, and the component's activity.
pub struct CallGuard {
    calls: u64,
    busy: HashSet<u32>,
    activity: Arc<Activity>,
}

impl Default for CallGuard {
    fn default() -> Self {
        CallGuard { calls: 0, busy: HashSet::new(), activity: Activity::new() }
    }
}

impl CallGuard {
    /// Count one call into the host; it is in flight until the returned [`Call`] drops.
    pub fn count(&mut self) -> Call {
        self.calls += 1;
        self.activity.call_started();
        Call(self.activity.clone())
    }

    /// Host calls so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// The component's activity, for the stall limit.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Rows moved: progress.
    pub fn moved_rows(&self, rows: u64) {
        if rows > 0 {
            self.activity.progressed();
        }
    }

    /// Count one call that uses `handle`, refusing it while a stream holds the handle.
    pub fn enter(&mut self, handle: u32) -> Result<Call, DbError> {
        let call = self.count();
        if self.busy.contains(&handle) {
            return Err(DbError::new(
                ErrorKind::InvalidInput,
                "a cursor or bulk load is still open on this handle: exhaust, finish or drop it first",
            ));
        }
        Ok(call)
    }

    /// A stream now holds `handle`.
    pub fn hold(&mut self, handle: u32) {
        self.busy.insert(handle);
    }

    /// The stream on `handle` ended.
    pub fn release(&mut self, handle: u32) {
        self.busy.remove(&handle);
    }

    /// Every stream ended (the host took everything back).
    pub fn release_all(&mut self) {
        self.busy.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_call_and_refuses_a_held_handle_until_released() {
        let mut guard = CallGuard::default();
        let _call = guard.count();
        assert!(guard.enter(7).is_ok());
        guard.hold(7);
        assert_eq!(guard.enter(7).err().unwrap().kind, ErrorKind::InvalidInput);
        assert!(guard.enter(8).is_ok(), "another handle is free");
        guard.release(7);
        assert!(guard.enter(7).is_ok());
        assert_eq!(guard.calls(), 5, "refused calls count too");
    }

    /// Sets the activity's clock back by `ms`, as if that much time had passed.
    fn age(activity: &Activity, ms: u64) {
        let back = |v: &AtomicU64| v.store(v.load(Ordering::Relaxed).saturating_sub(ms), Ordering::Relaxed);
        let now = activity.now_ms();
        activity.last_progress.store(now, Ordering::Relaxed);
        back(&activity.last_progress);
        if activity.in_flight_since.load(Ordering::Relaxed) > 0 {
            activity.in_flight_since.store(now + 1, Ordering::Relaxed);
            back(&activity.in_flight_since);
        }
    }

    #[test]
    fn cheap_calls_are_not_progress_but_moved_rows_and_long_calls_are() {
        // An activity whose clock started a minute ago, so that it can be set back.
        let origin = Instant::now() - Duration::from_secs(60);
        let activity =
            Arc::new(Activity { origin, last_progress: AtomicU64::new(60_000), in_flight_since: AtomicU64::new(0) });
        let mut guard = CallGuard { calls: 0, busy: HashSet::new(), activity: activity.clone() };
        age(&activity, 5_000);
        for _ in 0..100 {
            drop(guard.count());
        }
        assert!(activity.idle_for() >= Duration::from_secs(5), "cheap calls in a loop: {:?}", activity.idle_for());
        guard.moved_rows(0);
        assert!(activity.idle_for() >= Duration::from_secs(5), "an empty batch moves nothing");
        guard.moved_rows(3);
        assert!(activity.idle_for() < Duration::from_secs(1), "rows moved");

        age(&activity, 5_000);
        let call = guard.count();
        age(&activity, 5_000); // the call has now been in flight for 5 s
        assert_eq!(activity.idle_for(), Duration::ZERO, "a long call in flight is progress");
        drop(call);
        assert!(activity.idle_for() < Duration::from_secs(1), "and so is its end");
    }
}
