//! Finding a Blocklet Server data dir the way `blocklet server` does: walk up from the working
//! directory to `.blocklet-server/config.yml` (legacy: `.abtnode/abtnode.yml`).

use std::path::{Path, PathBuf};

/// The config dir names and config file names Blocklet Server has used, newest first.
const LAYOUTS: [(&str, &str); 2] = [(".blocklet-server", "config.yml"), (".abtnode", "abtnode.yml")];

/// A located data dir.
#[derive(Clone, Debug)]
pub struct DataDir {
    /// The data dir itself (`…/.blocklet-server`), where `core/`, `data/` … live.
    pub root: PathBuf,
    pub config_file: PathBuf,
    /// `node.did` from the config, when present.
    pub server_did: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("Cannot find config file for Blocklet Server (looked for .blocklet-server/config.yml from {0} upwards)")]
    NotFound(PathBuf),
    #[error("Invalid config file {path}: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },
    #[error("Cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

/// Walk up from `start` to the first directory holding a data dir.
pub fn discover(start: &Path) -> Result<DataDir, DataDirError> {
    for dir in start.ancestors() {
        for (name, config) in LAYOUTS {
            let file = dir.join(name).join(config);
            if is_file(&file)? {
                return load(&dir.join(name), &file);
            }
        }
        // Started inside the data dir itself.
        for (name, config) in LAYOUTS {
            if dir.file_name().is_some_and(|n| n == name) && dir.join(config).is_file() {
                return load(dir, &dir.join(config));
            }
        }
    }
    Err(DataDirError::NotFound(start.to_path_buf()))
}

/// `--data-dir DIR`: the data dir itself, or the directory holding it.
pub fn from_flag(dir: &Path) -> Result<DataDir, DataDirError> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    for (name, config) in LAYOUTS {
        if is_file(&dir.join(config))? {
            return load(&dir, &dir.join(config));
        }
        if is_file(&dir.join(name).join(config))? {
            return load(&dir.join(name), &dir.join(name).join(config));
        }
    }
    Err(DataDirError::NotFound(dir))
}

/// Whether `path` is a file; a permission problem is an error that names the path, not "no".
fn is_file(path: &Path) -> Result<bool, DataDirError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let dir = path.parent().unwrap_or(path);
            Err(DataDirError::Unreadable { path: dir.to_path_buf(), reason: e.to_string() })
        }
        Err(_) => Ok(false),
    }
}

fn load(root: &Path, config_file: &Path) -> Result<DataDir, DataDirError> {
    let text = std::fs::read_to_string(config_file)
        .map_err(|e| DataDirError::Unreadable { path: config_file.to_path_buf(), reason: e.to_string() })?;
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| DataDirError::InvalidConfig { path: config_file.to_path_buf(), reason: e.to_string() })?;
    if !config.is_mapping() {
        return Err(DataDirError::InvalidConfig {
            path: config_file.to_path_buf(),
            reason: "not a YAML mapping".into(),
        });
    }
    let server_did = config.get("node").and_then(|n| n.get("did")).and_then(|d| d.as_str()).map(str::to_string);
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let std::io::Result::Ok(entries) = std::fs::read_dir(&root) else {
        return Err(DataDirError::Unreadable { path: root, reason: "cannot list the data dir".into() });
    };
    drop(entries);
    Ok(DataDir {
        config_file: std::path::absolute(config_file).unwrap_or_else(|_| config_file.to_path_buf()),
        root,
        server_did,
    })
}

/// Whether a relative path matches a layout glob (`*` = exactly one segment; no `..`).
pub fn matches_pattern(pattern: &str, path: &str) -> bool {
    let (p, f): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == f.len()
        && f.iter().all(|s| !s.is_empty() && *s != "." && *s != "..")
        && p.iter().zip(&f).all(|(p, f)| *p == "*" || p == f)
}

/// Existing files under `root` matching a relative glob (`*` = exactly one path segment),
/// returned relative to `root`, sorted. Only plain relative patterns are accepted.
pub fn expand(root: &Path, pattern: &str) -> Result<Vec<String>, DataDirError> {
    let segments: Vec<&str> = pattern.split('/').collect();
    if segments.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return Ok(Vec::new());
    }
    let mut found = vec![String::new()];
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let mut next = Vec::new();
        for prefix in &found {
            let base = root.join(prefix);
            let candidates: Vec<String> = if *seg == "*" {
                let entries = match std::fs::read_dir(&base) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        return Err(DataDirError::Unreadable { path: base, reason: e.to_string() });
                    }
                    Err(_) => continue,
                };
                let mut names: Vec<String> = entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| !n.starts_with('.'))
                    .collect();
                names.sort();
                names
            } else {
                vec![seg.to_string()]
            };
            for name in candidates {
                let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                let path = root.join(&rel);
                let ok = match std::fs::metadata(&path) {
                    Ok(m) => {
                        if last {
                            m.is_file()
                        } else {
                            m.is_dir()
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        let at = path.parent().unwrap_or(&path).to_path_buf();
                        return Err(DataDirError::Unreadable { path: at, reason: e.to_string() });
                    }
                    Err(_) => false,
                };
                if ok {
                    next.push(rel);
                }
            }
        }
        found = next;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_up_and_expands_patterns() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("srv/.blocklet-server");
        std::fs::create_dir_all(root.join("data/zA")).unwrap();
        std::fs::create_dir_all(root.join("data/zB")).unwrap();
        std::fs::create_dir_all(root.join("core")).unwrap();
        std::fs::write(root.join("config.yml"), "node:\n  did: zXYZ\n").unwrap();
        std::fs::write(root.join("core/server.db"), "").unwrap();
        std::fs::write(root.join("data/zB/blocklet.db"), "").unwrap();
        let found = discover(&root.join("data/zA")).unwrap();
        assert_eq!(found.root, root);
        assert_eq!(found.server_did.as_deref(), Some("zXYZ"));
        assert_eq!(from_flag(&tmp.path().join("srv")).unwrap().root, root);
        assert_eq!(expand(&root, "data/*/blocklet.db").unwrap(), vec!["data/zB/blocklet.db"]);
        assert_eq!(expand(&root, "core/server.db").unwrap(), vec!["core/server.db"]);
        assert!(expand(&root, "../etc/passwd").unwrap().is_empty());
        assert!(matches!(discover(tmp.path()), Err(DataDirError::NotFound(_))));
        std::fs::write(root.join("config.yml"), "node: [unclosed").unwrap();
        assert!(matches!(from_flag(&root), Err(DataDirError::InvalidConfig { .. })));
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
mod in_use_tests {
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
