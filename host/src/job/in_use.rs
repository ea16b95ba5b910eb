//! Whether another process (a running server) has a SQLite database open, judged by the locks
//! SQLite itself takes, so a job can refuse to migrate files the server is still writing.

use super::console;
use super::outcome::JobError;
use std::path::{Path, PathBuf};

/// Refuse a database file another process has open (a running server), unless the user said
/// to go ahead (`--allow-running-server`).
pub(super) fn check_not_in_use(path: &Path, allow: bool) -> Result<(), JobError> {
    let Some(pid) = process_using(path) else { return Ok(()) };
    let message = format!(
        "{} is in use by process {pid} (is Blocklet Server running? stop it with `blocklet server stop` first)",
        path.display()
    );
    if allow {
        console::warn(&format!("{message}; going ahead because of --allow-running-server"));
        Ok(())
    } else {
        Err(JobError::InUse(format!("{message}, or pass --allow-running-server")))
    }
}

/// Which process, if any, has a SQLite database open, judged by the locks SQLite itself
/// takes: every connection to a WAL database holds a shared lock on the "DMS" byte of the
/// `-shm` file for as long as it is open, and any transaction locks bytes of the main file.
/// Probing with `F_GETLK` writes nothing.
pub fn process_using(db: &Path) -> Option<u32> {
    const WAL_DMS_BYTE: i64 = 128;
    const PENDING_BYTE: i64 = 0x4000_0000;
    let shm = PathBuf::from(format!("{}-shm", db.display()));
    lock_holder(&shm, WAL_DMS_BYTE, 1).or_else(|| lock_holder(db, PENDING_BYTE, 512))
}

fn lock_holder(path: &Path, start: i64, len: i64) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: F_GETLK only reads the lock table into `probe`, a plain C struct we own.
    let mut probe: libc::flock = unsafe { std::mem::zeroed() };
    probe.l_type = libc::F_WRLCK as libc::c_short;
    probe.l_whence = libc::SEEK_SET as libc::c_short;
    probe.l_start = start as libc::off_t;
    probe.l_len = len as libc::off_t;
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut probe) };
    (rc == 0 && probe.l_type != libc::F_UNLCK as libc::c_short).then_some(probe.l_pid as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_another_process_holding_a_wal_database_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::process::Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA journal_mode=WAL; CREATE TABLE t(a);")
            .output()
            .unwrap();
        assert_eq!(process_using(&db), None);
        // A second process keeps the database open for a while.
        let mut child = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg("SELECT count(*) FROM t; SELECT 1 FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 30000000) SELECT count(*) FROM c);")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut seen = None;
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            seen = process_using(&db);
            if seen.is_some() {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(seen, Some(child.id()));
    }
}
