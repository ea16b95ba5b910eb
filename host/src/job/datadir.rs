//! Finding a data dir the way the server does: walk up from the working directory to a
//! directory of one of the markers' names holding its config file. The markers come from the
//! component's conventions (for Blocklet Server: `.blocklet-server/config.yml`, legacy
//! `.abtnode/abtnode.yml`), preferred first. Also the database files of a layout's patterns.

use crate::sandbox::conventions::DataDirMarker;
use std::path::{Path, PathBuf};

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
    #[error("Cannot find config file for Blocklet Server (looked for {looked_for} from {from} upwards)")]
    NotFound { looked_for: String, from: PathBuf },
    #[error("Invalid config file {path}: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },
    #[error("Cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

/// Walk up from `start` to the first directory holding a data dir marked by one of `markers`.
pub fn discover(start: &Path, markers: &[DataDirMarker]) -> Result<DataDir, DataDirError> {
    for dir in start.ancestors() {
        for m in markers {
            let file = dir.join(&m.directory).join(&m.config_file);
            if is_file(&file)? {
                return load(&dir.join(&m.directory), &file);
            }
        }
        // Started inside the data dir itself.
        for m in markers {
            if dir.file_name().is_some_and(|n| n == std::ffi::OsStr::new(&m.directory))
                && dir.join(&m.config_file).is_file()
            {
                return load(dir, &dir.join(&m.config_file));
            }
        }
    }
    Err(not_found(start.to_path_buf(), markers))
}

/// `--data-dir DIR`: the data dir itself, or the directory holding it.
pub fn from_flag(dir: &Path, markers: &[DataDirMarker]) -> Result<DataDir, DataDirError> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    for m in markers {
        if is_file(&dir.join(&m.config_file))? {
            return load(&dir, &dir.join(&m.config_file));
        }
        let marked = dir.join(&m.directory);
        if is_file(&marked.join(&m.config_file))? {
            return load(&marked, &marked.join(&m.config_file));
        }
    }
    Err(not_found(dir, markers))
}

/// Refuse `path` unless it resolves (symlinks followed) into `bound`. A path that does not exist
/// yet (a file the job will write) is judged by its nearest existing ancestor, so a symlinked
/// directory cannot take the write elsewhere.
pub fn confined(bound: &Path, path: &Path) -> Result<(), String> {
    let bound = std::fs::canonicalize(bound).map_err(|e| format!("cannot resolve {}: {e}", bound.display()))?;
    let mut existing = path;
    let resolved = loop {
        match std::fs::canonicalize(existing) {
            Ok(p) => break p,
            Err(_) => match existing.parent() {
                Some(parent) => existing = parent,
                None => return Err(format!("cannot resolve {}", path.display())),
            },
        }
    };
    if resolved.starts_with(&bound) {
        Ok(())
    } else {
        Err(format!(
            "{} resolves to {}, outside {}: a job here may use only files under that directory",
            path.display(),
            resolved.display(),
            bound.display()
        ))
    }
}

/// No data dir from `from`: the message names the preferred marker.
fn not_found(from: PathBuf, markers: &[DataDirMarker]) -> DataDirError {
    let looked_for = markers.first().map(|m| format!("{}/{}", m.directory, m.config_file)).unwrap_or_default();
    DataDirError::NotFound { looked_for, from }
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

    fn markers() -> Vec<DataDirMarker> {
        crate::sandbox::Conventions::blocklet_server_1_17().data_dir_markers
    }

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
        let found = discover(&root.join("data/zA"), &markers()).unwrap();
        assert_eq!(found.root, root);
        assert_eq!(found.server_did.as_deref(), Some("zXYZ"));
        assert_eq!(from_flag(&tmp.path().join("srv"), &markers()).unwrap().root, root);
        assert_eq!(expand(&root, "data/*/blocklet.db").unwrap(), vec!["data/zB/blocklet.db"]);
        assert_eq!(expand(&root, "core/server.db").unwrap(), vec!["core/server.db"]);
        assert!(expand(&root, "../etc/passwd").unwrap().is_empty());
        let missing = discover(tmp.path(), &markers()).unwrap_err();
        assert!(matches!(missing, DataDirError::NotFound { .. }));
        assert!(missing.to_string().contains("looked for .blocklet-server/config.yml from"), "{missing}");
        std::fs::write(root.join("config.yml"), "node: [unclosed").unwrap();
        assert!(matches!(from_flag(&root, &markers()), Err(DataDirError::InvalidConfig { .. })));
    }
}
