//! The checks every database call of a component passes before it reaches a backend: the call
//! counts as the component's activity (the sandbox's CPU limit measures compute between host
//! calls), and a handle that a cursor or COPY still holds is refused, since anything else sent
//! on its connection would wait forever behind the stream.

use crate::wit::{DbError, ErrorKind};
use std::collections::HashSet;

/// Host calls counted so far, and the handles a stream holds.
#[derive(Default)]
pub struct CallGuard {
    calls: u64,
    busy: HashSet<u32>,
}

impl CallGuard {
    /// Count one call into the host.
    pub fn count(&mut self) {
        self.calls += 1;
    }

    /// Host calls so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Count one call that uses `handle`, refusing it while a stream holds the handle.
    pub fn enter(&mut self, handle: u32) -> Result<(), DbError> {
        self.count();
        if self.busy.contains(&handle) {
            return Err(DbError::new(
                ErrorKind::InvalidInput,
                "a cursor or bulk load is still open on this handle: exhaust, finish or drop it first",
            ));
        }
        Ok(())
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
        guard.count();
        assert!(guard.enter(7).is_ok());
        guard.hold(7);
        assert_eq!(guard.enter(7).unwrap_err().kind, ErrorKind::InvalidInput);
        assert!(guard.enter(8).is_ok(), "another handle is free");
        guard.release(7);
        assert!(guard.enter(7).is_ok());
        assert_eq!(guard.calls(), 5, "refused calls count too");
    }
}
