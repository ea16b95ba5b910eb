//! The job's [`EventSink`]: what a component reports, shown on the console and fed to the
//! progress display, and every rejected row, up to the job's maximum and each cut to a bounded
//! line, recorded in a JSON-lines file (the console lists the first [`REJECTS_SHOWN`]).

use super::console::{error, info, warn};
use super::progress::Progress;
use crate::capability::EventSink;
use crate::capability::events::{MAX_REJECTS_PER_JOB, NAME_MAX_BYTES, REJECT_FIELD_MAX_BYTES};
use crate::wit::blocklet::migrate::events::{Level, RejectedRow};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Rejected rows printed in full before the rest are only counted.
pub const REJECTS_SHOWN: u64 = 200;

/// Shows what a component reports and records every rejected row.
#[derive(Clone)]
pub struct ConsoleEvents {
    state: Arc<Mutex<EventState>>,
    progress: Progress,
}

struct EventState {
    rejects: u64,
    rejects_path: PathBuf,
    rejects_file: Option<std::io::BufWriter<std::fs::File>>,
    write_error: Option<String>,
}

impl ConsoleEvents {
    /// Rejected rows go to `rejects_path` (created on the first one).
    pub fn new(rejects_path: PathBuf) -> ConsoleEvents {
        ConsoleEvents::with_progress(rejects_path, Progress::silent())
    }

    /// Also feed `progress` (bars, lines, events file, timeline).
    pub fn with_progress(rejects_path: PathBuf, progress: Progress) -> ConsoleEvents {
        ConsoleEvents {
            state: Arc::new(Mutex::new(EventState { rejects: 0, rejects_path, rejects_file: None, write_error: None })),
            progress,
        }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn rejects(&self) -> u64 {
        self.state.lock().unwrap().rejects
    }

    /// The rejects file, once something was written to it; flushes it.
    pub fn rejects_file(&self) -> Option<PathBuf> {
        let mut s = self.state.lock().unwrap();
        let path = s.rejects_path.clone();
        s.rejects_file.as_mut().map(|f| {
            let _ = f.flush();
            path
        })
    }

    pub fn write_error(&self) -> Option<String> {
        self.state.lock().unwrap().write_error.clone()
    }
}

/// The default rejects file: in the temp dir, never inside the data dir being migrated.
pub fn default_rejects_path() -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    std::env::temp_dir().join(format!("blocklet-migrate-rejects-{stamp}-{}.jsonl", std::process::id()))
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
            Level::Warn => warn(message),
            Level::Error => error(message),
        }
    }

    fn progress(&mut self, database: &str, table: &str, _rows_done: u64, rows_total: u64) {
        self.progress.table_rows_total(database, table, rows_total);
    }

    fn load_started(&mut self, database: &str, table: &str) {
        self.progress.table_started(database, table);
    }

    fn rows_sent(&mut self, database: &str, table: &str, rows: u64) {
        self.progress.rows_sent(database, table, rows);
    }

    fn load_finished(&mut self, database: &str, table: &str, rows: u64) {
        self.progress.table_loaded(database, table, rows);
    }

    fn reject(&mut self, row: RejectedRow) -> bool {
        let mut s = self.state.lock().unwrap();
        s.rejects += 1;
        if s.rejects > MAX_REJECTS_PER_JOB {
            return false;
        }
        if s.rejects <= REJECTS_SHOWN {
            error(&describe_reject(&row));
        } else if s.rejects == REJECTS_SHOWN + 1 {
            error("… more rejected rows follow; see the rejects file");
        }
        if s.rejects_file.is_none() && s.write_error.is_none() {
            match std::fs::File::create(&s.rejects_path) {
                Ok(f) => s.rejects_file = Some(std::io::BufWriter::new(f)),
                Err(e) => s.write_error = Some(format!("cannot write {}: {e}", s.rejects_path.display())),
            }
        }
        if let Some(f) = s.rejects_file.as_mut() {
            let (name, field) = (NAME_MAX_BYTES, REJECT_FIELD_MAX_BYTES);
            let line = serde_json::json!({
                "database": json_excerpt(&row.database, name),
                "table": json_excerpt(&row.table, name),
                "primary_key": json_excerpt(&row.primary_key, name),
                "column": json_excerpt(&row.column, name),
                "value_excerpt": json_excerpt(&row.value_excerpt, field),
                "reason": json_excerpt(&row.reason, field),
            });
            let _ = writeln!(f, "{line}");
        }
        true
    }
}

/// The longest start of `s` whose JSON string form (without its quotes) takes at most `max`
/// bytes, ending in `…` when cut: a line of the rejects file is bounded as written, escapes
/// included.
fn json_excerpt(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    fn escaped_len(c: char) -> usize {
        match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        }
    }
    if s.chars().map(escaped_len).sum::<usize>() <= max {
        return s.into();
    }
    // Room for the `…` (3 bytes).
    let mut used = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        used += escaped_len(c);
        if used > max.saturating_sub(3) {
            break;
        }
        end = i + c.len_utf8();
    }
    format!("{}…", &s[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON's escapes (a control character takes 6 bytes, a quote 2) count against the bound.
    #[test]
    fn a_json_excerpt_is_bounded_as_written() {
        assert_eq!(json_excerpt("short", 16), "short");
        for field in ["\u{1b}\"\\\u{7}".repeat(256), "é".repeat(1024), "\\".repeat(1024)] {
            let excerpt = json_excerpt(&field, 1024);
            let written = serde_json::to_string(excerpt.as_ref()).unwrap();
            assert!(written.len() - 2 <= 1024, "{} bytes written", written.len() - 2);
            assert!(written.len() - 2 > 1024 - 20, "cut no shorter than needed: {}", written.len() - 2);
            assert!(excerpt.ends_with('…'));
        }
    }

    /// The job's maximum of rejected rows: every row up to it is written, the next is refused.
    #[test]
    fn rejected_rows_past_the_jobs_maximum_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.jsonl");
        let mut events = ConsoleEvents::new(path.clone());
        let row = || RejectedRow {
            database: "server_db".into(),
            table: "users".into(),
            primary_key: "did=1".into(),
            column: "did".into(),
            value_excerpt: "x".into(),
            reason: "too long".into(),
        };
        for _ in 0..MAX_REJECTS_PER_JOB {
            assert!(events.reject(row()));
        }
        assert!(!events.reject(row()));
        let written = std::fs::read_to_string(events.rejects_file().unwrap()).unwrap();
        assert_eq!(written.lines().count() as u64, MAX_REJECTS_PER_JOB);
    }
}
