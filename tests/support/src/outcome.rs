//! What a finished run must look like: the CLI's completion and error lines, the lock file, and the
//! files a `--dialect sqlite` run leaves beside the databases.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::Output;
use crate::timestamp::parse_timestamp_micros;

/// Where the tool writes its success marker, relative to the data dir.
pub const LOCK_REL: &str = "core/sqlite-to-postgres.lock";

/// Asserts exit code 0, no `✖` line in stderr, and the final `✔ Migration postgres completed` line.
#[track_caller]
pub fn assert_success(out: &Output) {
    assert_eq!(out.code, 0, "expected success: {out:?}");
    assert!(out.error_lines().is_empty(), "successful run printed ✖ lines: {out:?}");
    assert!(out.stdout.contains("✔ Migration postgres completed"), "missing completion message: {out:?}");
}

/// Asserts a non-zero exit, at least one stderr line starting with `✖`, and no completion message.
#[track_caller]
pub fn assert_failure(out: &Output) {
    assert_ne!(out.code, 0, "expected a non-zero exit code: {out:?}");
    assert!(!out.error_lines().is_empty(), "expected a stderr line starting with ✖: {out:?}");
    assert!(!out.stdout.contains("Migration postgres completed"), "failed run claims completion: {out:?}");
}

/// What a successful `--dialect sqlite` run prints last.
pub const SQLITE_COMPLETED: &str = "✔ Migration sqlite completed";

/// The hint a successful `--dialect sqlite` run prints after [`SQLITE_COMPLETED`].
pub const SQLITE_START_HINT: &str =
    "ℹ Please start server, will use SQLite database: unset ABT_NODE_POSTGRES_URL && blocklet server start";

/// The name part every temporary file of a `--dialect sqlite` run has: `.<name>.blocklet-migrate.tmp`.
pub const TMP_MARK: &str = ".blocklet-migrate.tmp";

/// The name part of the backups a `--dialect sqlite` run keeps: `<file>.bak-<UTCSTAMP>`.
pub const BAK_MARK: &str = ".bak-";

/// Asserts exit code 0, no `✖` line, and the `--dialect sqlite` completion and start-hint lines, in that order.
#[track_caller]
pub fn assert_sqlite_success(out: &Output) {
    assert_eq!(out.code, 0, "expected success: {out:?}");
    assert!(out.error_lines().is_empty(), "successful run printed ✖ lines: {out:?}");
    let done = out.stdout.find(SQLITE_COMPLETED);
    let hint = out.stdout.find(SQLITE_START_HINT);
    assert!(done.is_some(), "missing {SQLITE_COMPLETED:?}: {out:?}");
    assert!(hint.is_some(), "missing {SQLITE_START_HINT:?}: {out:?}");
    assert!(done < hint, "completion must come before the start hint: {out:?}");
}

/// Asserts exit code `code`, at least one `✖` line, and no completion message of either direction.
#[track_caller]
pub fn assert_sqlite_failure(out: &Output, code: i32) {
    assert_eq!(out.code, code, "expected exit code {code}: {out:?}");
    assert!(!out.error_lines().is_empty(), "expected a stderr line starting with ✖: {out:?}");
    assert!(!out.stdout.contains("Migration sqlite completed"), "failed run claims completion: {out:?}");
    assert!(!out.stdout.contains("Migration postgres completed"), "failed run claims completion: {out:?}");
}

/// Every path under `dir` (files, dirs, symlinks) whose file name contains `needle`, sorted.
pub fn paths_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, needle: &str, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for entry in rd.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().contains(needle) {
                out.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, needle, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, needle, &mut out);
    out.sort();
    out
}

/// Asserts that the lock file exists and holds exactly one ISO-8601 UTC timestamp with milliseconds
/// (`2026-11-25T18:56:32.947Z`, JavaScript `toISOString()`), optionally followed by a newline.
/// The time must fall between `not_before` and `not_after`, with one second of slack for rounding.
#[track_caller]
pub fn assert_lock_file(data_dir: &Path, not_before: SystemTime, not_after: SystemTime) {
    let path = data_dir.join(LOCK_REL);
    let raw =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("lock file {} missing or unreadable: {e}", path.display()));
    let text = raw.strip_suffix('\n').unwrap_or(&raw);
    let b = text.as_bytes();
    let shape_ok = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape_ok, "lock file content {raw:?} is not like 2026-11-25T18:56:32.947Z");
    let micros = parse_timestamp_micros(text).unwrap_or_else(|| panic!("unparsable lock timestamp {raw:?}"));
    let lo = micros_since_epoch(not_before) - 1_000_000;
    let hi = micros_since_epoch(not_after) + 1_000_000;
    assert!((lo..=hi).contains(&micros), "lock timestamp {text} is not within the tool's run time");
}

fn micros_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).expect("time after epoch").as_micros() as i64
}

/// Asserts that the lock file does not exist (a failed migration must not write it).
#[track_caller]
pub fn assert_no_lock_file(data_dir: &Path) {
    let path = data_dir.join(LOCK_REL);
    assert!(!path.exists(), "lock file {} must not exist after a failed run", path.display());
}
