//! Where a cluster's directory goes: `/dev/shm` when it is a tmpfs with room for the run, else the
//! temp dir. Every setting already keeps the disk out of a measurement (`fsync=off`, …), but on ext4
//! the first `CREATE DATABASE` after dropping the previous contender's databases spent 0.1–1.3 s in
//! the inode allocator (`recently_deleted`, `find_inode_bit`), a cost that grew from round to round
//! and landed on whoever came next.

use std::path::{Path, PathBuf};

/// The parent directory for a cluster that will hold a run of `rows` rows.
pub fn default_parent(rows: u64) -> PathBuf {
    let shm = Path::new("/dev/shm");
    // The data, indexes and WAL of one contender at a time, with room to spare.
    let needed = (2u64 << 30).saturating_add(rows.saturating_mul(8 * 1024));
    match filesystem_of(shm) {
        Some((true, available)) if available >= needed => shm.to_path_buf(),
        _ => std::env::temp_dir(),
    }
}

/// `on tmpfs /dev/shm` or `on disk /tmp`: for a report's header.
pub fn describe_storage(dir: &Path) -> String {
    match filesystem_of(dir) {
        Some((true, _)) => format!("on tmpfs {}", dir.display()),
        Some((false, _)) => format!("on disk {}", dir.display()),
        None => format!("in {}", dir.display()),
    }
}

/// Whether `dir` is on a tmpfs, and the bytes available there.
fn filesystem_of(dir: &Path) -> Option<(bool, u64)> {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let st = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(path.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libc targets.
    let tmpfs = st.f_type as i64 == TMPFS_MAGIC;
    Some((tmpfs, st.f_bavail as u64 * st.f_bsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_too_big_for_shared_memory_goes_to_the_temp_dir() {
        assert_eq!(default_parent(u64::MAX / (16 * 1024)), std::env::temp_dir());
    }

    #[test]
    fn storage_is_described_by_what_the_directory_is_on() {
        let tmpfs = filesystem_of(Path::new("/dev/shm")).is_some_and(|(t, _)| t);
        let shm = describe_storage(Path::new("/dev/shm"));
        assert_eq!(shm.starts_with("on tmpfs"), tmpfs, "{shm}");
        assert!(describe_storage(Path::new("/no/such/dir")).starts_with("in "));
    }
}
