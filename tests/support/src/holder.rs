//! Another process holding a SQLite file open, as a live server does ([`SqliteHolder`]).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::sqlite::sqlite3_bin;

/// Another process holding a SQLite file open, as a live server does: a `sqlite3` CLI that reads
/// its script from a pipe and then waits for more input.
/// * [`SqliteHolder::begin_exclusive`]: holds `BEGIN EXCLUSIVE`, like a server in the middle of a write;
/// * [`SqliteHolder::idle`]: has read once and keeps the connection open, like a server between requests.
///
/// [`SqliteHolder::release`] ends it cleanly; `Drop` kills it if still running.
/// Note: the holder opens the file in place, and when it quits as the last connection SQLite may
/// checkpoint the WAL. Take file hashes while it holds the file, not after the release.
pub struct SqliteHolder {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    end: &'static str,
    dir: TempDir,
}

impl SqliteHolder {
    /// Holds `BEGIN EXCLUSIVE` on `db_file`; returns once the lock is held.
    pub fn begin_exclusive(db_file: &Path) -> SqliteHolder {
        SqliteHolder::start(db_file, "BEGIN EXCLUSIVE;", "ROLLBACK;\n.quit\n")
    }

    /// Keeps an idle connection to `db_file` that has read from it (so it takes part in the WAL);
    /// returns once the read is done.
    pub fn idle(db_file: &Path) -> SqliteHolder {
        SqliteHolder::start(db_file, "SELECT count(*) FROM sqlite_master;", ".quit\n")
    }

    fn start(db_file: &Path, setup: &str, end: &'static str) -> SqliteHolder {
        use std::io::Write;
        let dir = tempfile::Builder::new().prefix("bm-holder-").tempdir().expect("temp dir for the holder");
        let marker = dir.path().join("ready");
        let err_log = fs::File::create(dir.path().join("stderr")).expect("create stderr log");
        let mut child = Command::new(sqlite3_bin())
            .args(["-batch", "-bail"])
            .arg(db_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(err_log)
            .spawn()
            .expect("spawn sqlite3 holder");
        let mut stdin = child.stdin.take().expect("stdin pipe");
        // The marker is written (and closed, so flushed) only after `setup` succeeded.
        let script =
            format!(".timeout 10000\n{setup}\n.output '{}'\nSELECT 'ready';\n.output stdout\n", marker.display());
        stdin.write_all(script.as_bytes()).expect("write to the holder");
        stdin.flush().expect("flush the holder's stdin");
        let mut holder = SqliteHolder { child, stdin: Some(stdin), end, dir };
        let start = Instant::now();
        loop {
            if fs::read_to_string(&marker).is_ok_and(|s| s.contains("ready")) {
                return holder;
            }
            if let Some(st) = holder.child.try_wait().expect("wait for the holder") {
                let err = fs::read_to_string(holder.dir.path().join("stderr")).unwrap_or_default();
                panic!("sqlite3 holder on {} exited ({st}) before `{setup}` was done: {err}", db_file.display());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "sqlite3 did not get `{setup}` done on {}",
                db_file.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the holder's transaction (if any), quits and waits for the process.
    pub fn release(mut self) {
        use std::io::Write;
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(self.end.as_bytes());
        }
        let st = self.child.wait().expect("wait for the holder");
        let err = fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
        assert!(st.success() && err.trim().is_empty(), "sqlite3 holder failed ({st}): {err}");
    }
}

impl Drop for SqliteHolder {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
