//! Temp dirs that remove themselves, and the fixture copy the demo migrates: std only, so the demo
//! builds in seconds before the workspace does.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, removed (with everything in it) on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(prefix: &str) -> Result<ScratchDir, String> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        for attempt in 0..100u32 {
            let path = base.join(format!("{prefix}-{}-{nanos:x}-{attempt}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(format!("cannot create a fresh directory {prefix}-* in {}", base.display()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copy `src` into `dst` (which may exist): files, `-wal`/`-shm` included, made writable (0644,
/// dirs 0755) because the repository's fixture is read-only and SQLite needs to create its `-shm`.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), String> {
    fs::create_dir_all(dst).map_err(|e| format!("cannot create {}: {e}", dst.display()))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", dst.display()))?;
    let entries = fs::read_dir(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| format!("cannot stat {}: {e}", from.display()))?;
        if kind.is_dir() {
            copy_tree(&from, &to)?;
        } else if kind.is_file() {
            fs::copy(&from, &to).map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644))
                .map_err(|e| format!("cannot chmod {}: {e}", to.display()))?;
        } else {
            return Err(format!("{}: not a file or directory; the fixture holds only those", from.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_writable_and_the_scratch_dir_goes_away() {
        let src = ScratchDir::new("demo-test-src").unwrap();
        fs::create_dir(src.path().join("core")).unwrap();
        let file = src.path().join("core/server.db-wal");
        fs::write(&file, b"wal").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o444)).unwrap();
        let dst = ScratchDir::new("demo-test-dst").unwrap();
        copy_tree(src.path(), &dst.path().join("copy")).unwrap();
        let copied = dst.path().join("copy/core/server.db-wal");
        assert_eq!(fs::read(&copied).unwrap(), b"wal");
        assert_eq!(fs::metadata(&copied).unwrap().permissions().mode() & 0o777, 0o644);
        let kept = dst.path().to_path_buf();
        drop(dst);
        assert!(!kept.exists());
    }
}
