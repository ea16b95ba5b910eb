//! What the user sees: the original command's `ℹ`/`✔` lines on stdout, `✖` errors on stderr,
//! and rejected rows listed (bounded) on stderr.

use crate::bindings::blocklet::migrate::events::{Level, RejectedRow};
use crate::runtime::EventSink;
use std::sync::{Arc, Mutex};

pub fn info(msg: &str) {
    println!("ℹ {msg}");
}

pub fn success(msg: &str) {
    println!("✔ {msg}");
}

pub fn error(msg: &str) {
    eprintln!("✖ {msg}");
}

/// Rejected rows printed in full before the rest are only counted.
pub const REJECTS_SHOWN: u64 = 200;

/// Counts and shows what a component reports.
#[derive(Clone, Default)]
pub struct ConsoleEvents {
    state: Arc<Mutex<EventCounts>>,
}

#[derive(Default)]
struct EventCounts {
    rejects: u64,
}

impl ConsoleEvents {
    pub fn rejects(&self) -> u64 {
        self.state.lock().unwrap().rejects
    }
}

/// One rejected row, as a line.
pub fn describe_reject(r: &RejectedRow) -> String {
    format!(
        "{}.{} [{}] column {}: {} (value: {})",
        r.database, r.table, r.primary_key, r.column, r.reason, r.value_excerpt
    )
}

impl EventSink for ConsoleEvents {
    fn log(&mut self, level: Level, message: &str) {
        match level {
            Level::Debug => {}
            Level::Info => info(message),
            Level::Warn => eprintln!("⚠ {message}"),
            Level::Error => error(message),
        }
    }

    fn progress(&mut self, _database: &str, _table: &str, _rows_done: u64, _rows_total: u64) {}

    fn reject(&mut self, row: RejectedRow) {
        let mut s = self.state.lock().unwrap();
        s.rejects += 1;
        if s.rejects <= REJECTS_SHOWN {
            error(&describe_reject(&row));
        } else if s.rejects == REJECTS_SHOWN + 1 {
            error("… more rejected rows follow; only the count is shown from here on");
        }
    }
}
