//! A test's own copy of the demo fixture, and proof that a run left a source tree unchanged.
//!
//! Tests only ever touch a copy ([`fixture_copy`]); the fixture in the repo stays read-only. A
//! source tree is compared by the sha256 of every file ([`hash_tree`]), `-shm` files excluded.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::paths::fixture_dir;

/// Copies `tests/fixtures/blocklet-1.17.12-demo` recursively into a fresh temp dir and returns it.
///
/// Every file is copied, including the `-wal`/`-shm` files and the hidden `.blocklet-server` and `.sock`.
/// The data dir is then `<tmp>/.blocklet-server`; see [`data_dir`].
/// The fixture in the repo is read-only (mode `r--r--r--`), so the copies are made writable
/// (files 0644, dirs 0755). The tool and SQLite need that to create `-shm` files and lock files,
/// and the temp dir can then be removed as a non-root user.
pub fn fixture_copy() -> TempDir {
    let src = fixture_dir();
    assert!(src.join(".blocklet-server").join("config.yml").is_file(), "demo fixture not found at {}", src.display());
    let tmp = tempfile::Builder::new().prefix("bm-fixture-").tempdir().expect("create temp dir for fixture copy");
    copy_tree(&src, tmp.path());
    tmp
}

/// The canonical (symlink-free, absolute) data dir of a fixture copy: `<tmp>/.blocklet-server`.
/// The tool reports paths derived from `getcwd()`, which are canonical. Compare against this path.
pub fn data_dir(tmp_root: &Path) -> PathBuf {
    fs::canonicalize(tmp_root)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", tmp_root.display()))
        .join(".blocklet-server")
}

/// Recursive copy of regular files, directories and symlinks. Copies are made writable (see
/// [`fixture_copy`]): files 0644, directories (`dst` too) 0755.
pub fn try_copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("mkdir {}", dst.display()))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).with_context(|| format!("chmod {}", dst.display()))?;
    let mut entries: Vec<fs::DirEntry> =
        fs::read_dir(src).and_then(|rd| rd.collect()).with_context(|| format!("read_dir {}", src.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ft = entry.file_type().with_context(|| format!("file type of {}", from.display()))?;
        if ft.is_symlink() {
            let target = fs::read_link(&from).with_context(|| format!("read_link {}", from.display()))?;
            std::os::unix::fs::symlink(&target, &to).with_context(|| format!("symlink {}", to.display()))?;
        } else if ft.is_dir() {
            try_copy_tree(&from, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to).with_context(|| format!("copy {} -> {}", from.display(), to.display()))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644))
                .with_context(|| format!("chmod {}", to.display()))?;
        } else {
            bail!("unexpected special file {}", from.display());
        }
    }
    Ok(())
}

/// [`try_copy_tree`], panicking on error.
#[track_caller]
pub fn copy_tree(src: &Path, dst: &Path) {
    try_copy_tree(src, dst).unwrap_or_else(|e| panic!("{e:#}"));
}

/// sha256 (hex) of every file under `dir`, keyed by path relative to `dir`. Symlinks are recorded
/// by their target, not followed.
///
/// `*-shm` files are **excluded**. They hold SQLite's WAL index: shared memory backed by a file,
/// which holds no data of its own and can be rebuilt from the `-wal` at any time. Any connection,
/// even a read-only one, may rewrite it. The first connection to open a WAL database truncates and
/// rebuilds it. So a correct read-only reader still changes `-shm`. Everything else, including the
/// `.db` and `-wal` files, must be byte-identical after a migration.
pub fn hash_tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut map = BTreeMap::new();
    hash_walk(dir, dir, &mut map);
    map
}

fn hash_walk(root: &Path, dir: &Path, map: &mut BTreeMap<PathBuf, String>) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for entry in rd {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("under root").to_path_buf();
        let ft = entry.file_type().expect("file type");
        if ft.is_symlink() {
            let target = fs::read_link(&path).expect("read_link");
            map.insert(rel, format!("symlink:{}", target.display()));
        } else if ft.is_dir() {
            hash_walk(root, &path, map);
        } else if ft.is_file() {
            if path.to_string_lossy().ends_with("-shm") {
                continue;
            }
            map.insert(rel, sha256_file(&path));
        } else {
            map.insert(rel, "special-file".to_string());
        }
    }
}

/// Hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Panics with a list of added, removed and changed files if the two [`hash_tree`] results differ.
#[track_caller]
pub fn assert_same_tree(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>, what: &str) {
    let mut problems = Vec::new();
    for (p, h) in before {
        match after.get(p) {
            None => problems.push(format!("  removed: {}", p.display())),
            Some(h2) if h2 != h => problems.push(format!("  changed: {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            problems.push(format!("  added:   {}", p.display()));
        }
    }
    assert!(problems.is_empty(), "{what}: file tree changed:\n{}", problems.join("\n"));
}

/// Overwrites every byte of `file` after the first `keep` bytes with deterministic pseudo-random
/// bytes (xorshift), keeping the file's length.
pub fn scramble_after(file: &Path, keep: usize, seed: u64) {
    let mut bytes = fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let mut x = seed | 1;
    for b in bytes.iter_mut().skip(keep) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 32) as u8;
    }
    fs::write(file, bytes).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
}

/// sha256 of zero bytes.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// [`assert_same_tree`] for a source data dir whose databases a test changed with [`sqlite_exec`]:
/// the `sqlite3` CLI checkpoints and deletes the `-wal` when it closes, and the next connection
/// to the WAL-mode database, even a read-only one, creates an empty `-wal` again. An added
/// **empty** `-wal` holds no data and is not counted as a change; anything else is.
#[track_caller]
pub fn assert_same_source(before: &BTreeMap<PathBuf, String>, data_dir: &Path, what: &str) {
    let mut after = hash_tree(data_dir);
    after.retain(|p, h| before.contains_key(p) || !(h == EMPTY_SHA256 && p.to_string_lossy().ends_with("-wal")));
    assert_same_tree(before, &after, what);
}
