//! Putting SQLite files built by a PostgreSQL → SQLite job into place. Each file is built beside
//! its destination under a temporary name, so the final move is a rename on one filesystem;
//! the file it replaces (with its `-wal`/`-shm`) is kept as a timestamped backup that opens as
//! it is, and the new file takes the owner and mode of the old one, so a server running as
//! another user can still open it.

use super::outcome::JobError;
use std::path::{Path, PathBuf};

/// The name a file is built under, beside its destination.
pub(super) fn temporary_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.blocklet-migrate.tmp"))
}

/// Remove a database file and SQLite's files beside it, if they exist.
pub(super) fn remove_with_sidecars(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// The stamp of one job's backups.
pub(super) fn backup_stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// Move the verified, synced file `tmp` to `dest`, keeping what was there as backups (returned).
pub(super) fn swap_in(tmp: &Path, dest: &Path, stamp: &str) -> Result<Vec<PathBuf>, JobError> {
    let mut backups = Vec::new();
    if dest.exists() {
        // `X.bak-STAMP` with its `-wal`/`-shm` beside it under SQLite's own names, so the
        // backup opens as it is; a name that is taken gets a counter, never overwritten.
        let base = unique_backup_name(dest, stamp);
        for suffix in ["", "-wal", "-shm"] {
            let old = PathBuf::from(format!("{}{suffix}", dest.display()));
            if old.exists() {
                let backup = PathBuf::from(format!("{}{suffix}", base.display()));
                std::fs::rename(&old, &backup).map_err(|e| {
                    JobError::Failed(format!("cannot move {} to {}: {e}", old.display(), backup.display()))
                })?;
                backups.push(backup);
            }
        }
    }
    adopt_ownership(tmp, backups.first().map(PathBuf::as_path).or(dest.parent()));
    std::fs::rename(tmp, dest)
        .map_err(|e| JobError::Failed(format!("cannot move {} to {}: {e}", tmp.display(), dest.display())))?;
    if let Some(dir) = dest.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(backups)
}

/// `<dest>.bak-<stamp>`, or `<dest>.bak-<stamp>-<n>` when that (or its `-wal`/`-shm`) exists.
fn unique_backup_name(dest: &Path, stamp: &str) -> PathBuf {
    let taken =
        |p: &PathBuf| ["", "-wal", "-shm"].iter().any(|s| PathBuf::from(format!("{}{s}", p.display())).exists());
    let first = PathBuf::from(format!("{}.bak-{stamp}", dest.display()));
    if !taken(&first) {
        return first;
    }
    (1..)
        .map(|n| PathBuf::from(format!("{}.bak-{stamp}-{n}", dest.display())))
        .find(|p| !taken(p))
        .expect("a free name")
}

/// Give a new file the owner and mode of the file it replaces (or of its directory).
fn adopt_ownership(new: &Path, like: Option<&Path>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(meta) = like.and_then(|p| std::fs::metadata(p).ok()) else { return };
    let _ = std::os::unix::fs::chown(new, Some(meta.uid()), Some(meta.gid()));
    if meta.is_file() {
        let _ = std::fs::set_permissions(new, std::fs::Permissions::from_mode(meta.mode() & 0o7777));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_file_and_its_sidecars_become_a_backup_that_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("server.db");
        std::fs::write(&dest, "old").unwrap();
        std::fs::write(dir.path().join("server.db-wal"), "old wal").unwrap();
        std::fs::write(dir.path().join("server.db.bak-S"), "an earlier backup").unwrap();
        let tmp = temporary_path(&dest);
        assert_eq!(tmp, dir.path().join(".server.db.blocklet-migrate.tmp"));
        std::fs::write(&tmp, "new").unwrap();
        let backups = swap_in(&tmp, &dest, "S").unwrap();
        assert_eq!(backups, [dir.path().join("server.db.bak-S-1"), dir.path().join("server.db.bak-S-1-wal")]);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(dir.path().join("server.db.bak-S")).unwrap(), "an earlier backup");
        assert!(!tmp.exists());
    }
}
