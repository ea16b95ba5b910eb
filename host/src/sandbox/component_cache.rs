//! Compiled components, cached on disk so a warm run skips Cranelift.
//!
//! An entry is keyed by the component's sha256, the wasmtime version and the engine's
//! compilation settings ([`Engine::precompile_compatibility_hash`]), and stored as
//! `<cache dir>/<key>.cwasm`: a small header (magic, key, the artifact's sha256 and length)
//! followed by the artifact wasmtime produced. Entries are written to a temporary file and
//! renamed into place, so readers never see half an entry.
//!
//! Nothing read from the cache is trusted: the header, length and sha256 are checked on the
//! bytes in memory before those same bytes go to [`Component::deserialize`], and anything
//! wrong — truncated, garbage, another key, a different wasmtime, an artifact wasmtime
//! rejects — is recompiled and overwritten ([`CacheOutcome::Recompiled`]), never a crash.
//! The checksum catches corruption, not tampering: whoever can write the cache directory can
//! make the host run native code. So the directory is created private (`0700`) and, on Unix,
//! a directory or entry that another user owns or may write is not used at all
//! ([`CacheOutcome::Uncached`]).

use anyhow::{Context, anyhow};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

/// The wasmtime this host links (pinned with `=` in `host/Cargo.toml`; a test checks it
/// against `Cargo.lock`).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Environment variable naming the cache directory; set but empty, the cache is off.
pub const CACHE_DIR_ENV: &str = "BLOCKLET_MIGRATE_CACHE_DIR";

const MAGIC: &[u8; 8] = b"BMCWASM1";
/// magic · key (32) · artifact sha256 (32) · artifact length (u64 LE)
const HEADER_LEN: usize = 8 + 32 + 32 + 8;

/// What [`load_component`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A verified entry was loaded; nothing was compiled.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry existed but was not usable (the reason says why): compiled and overwritten.
    Recompiled { reason: String },
    /// No cache directory: compiled, nothing stored.
    Disabled,
    /// Compiled, but the cache could not be used or written (the reason says why).
    Uncached { reason: String },
}

/// Lower-case hex sha256 of a component binary (what `component info` prints).
pub fn component_sha256(wasm: &[u8]) -> String {
    hex(&Sha256::digest(wasm))
}

/// The cache key of `wasm` compiled by `engine`: lower-case hex, 64 characters.
pub fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    hex(&key_bytes(engine, wasm))
}

fn key_bytes(engine: &Engine, wasm: &[u8]) -> [u8; 32] {
    let mut settings = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut settings);
    let settings = settings.0.finalize();
    let mut key = Sha256::new();
    key.update(b"blocklet-migrate component cache 1\0");
    key.update(Sha256::digest(wasm));
    key.update(b"\0wasmtime ");
    key.update(WASMTIME_VERSION.as_bytes());
    key.update(b"\0");
    key.update(settings);
    key.finalize().into()
}

/// The cache directory to use when none is given: `$BLOCKLET_MIGRATE_CACHE_DIR` (set but
/// empty: no cache), else `$XDG_CACHE_HOME/blocklet-migrate`, else
/// `$HOME/.cache/blocklet-migrate`; `None` when none of these is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    default_cache_dir_from(|name| std::env::var_os(name))
}

fn default_cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if let Some(dir) = var(CACHE_DIR_ENV) {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    // The XDG spec ignores a relative XDG_CACHE_HOME.
    if let Some(xdg) = var("XDG_CACHE_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Some(xdg.join("blocklet-migrate"));
    }
    var("HOME").filter(|h| !h.is_empty()).map(|home| PathBuf::from(home).join(".cache").join("blocklet-migrate"))
}

/// Compile `wasm` for `engine`, or load it from `cache_dir` when a verified entry is there.
/// Errors only when the component itself does not compile; cache problems are reported in
/// the outcome, never as errors.
pub fn load_component(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: Option<&Path>,
) -> anyhow::Result<(Component, CacheOutcome)> {
    let Some(dir) = cache_dir else {
        return Ok((compile(engine, wasm)?, CacheOutcome::Disabled));
    };
    let key = key_bytes(engine, wasm);
    let path = dir.join(format!("{}.cwasm", hex(&key)));
    if let Some(reason) = unsafe_location(dir, None) {
        return Ok((compile(engine, wasm)?, CacheOutcome::Uncached { reason }));
    }
    let stale = match read_entry(&path, &key) {
        Entry::Missing => None,
        Entry::Unusable(reason) => Some(reason),
        Entry::Unsafe(reason) => {
            return Ok((compile(engine, wasm)?, CacheOutcome::Uncached { reason }));
        }
        Entry::Verified(artifact) => {
            // SAFETY: `Component::deserialize` runs the artifact's native code, so it must come
            // from `Engine::precompile_component`/`Component::serialize`. These bytes do: the
            // entry sits in a directory only this user can write (checked above), and its
            // header's key, length and sha256 were verified on these very bytes in memory, so
            // a torn or corrupted write cannot reach here. wasmtime itself then checks the
            // artifact's format, version and engine settings and refuses a mismatch.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => Some(format!("wasmtime refused the cached artifact: {e}")),
            }
        }
    };
    let component = compile(engine, wasm)?;
    let stored =
        component.serialize().map_err(|e| anyhow!("{e}")).and_then(|artifact| store_entry(dir, &path, &key, &artifact));
    let outcome = match (stored, stale) {
        (Ok(()), None) => CacheOutcome::Miss,
        (Ok(()), Some(reason)) => CacheOutcome::Recompiled { reason },
        (Err(e), stale) => CacheOutcome::Uncached {
            reason: match stale {
                Some(reason) => format!("{reason}; then storing the new entry failed: {e:#}"),
                None => format!("storing the entry failed: {e:#}"),
            },
        },
    };
    Ok((component, outcome))
}

fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm)
        .map_err(|e| anyhow!("{e}"))
        .context("the migration component is not a valid wasm component")
}

enum Entry {
    Missing,
    /// Wrong, truncated or corrupt: recompile and overwrite.
    Unusable(String),
    /// Owned or writable by someone else: do not touch.
    Unsafe(String),
    Verified(Vec<u8>),
}

fn read_entry(path: &Path, key: &[u8; 32]) -> Entry {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Entry::Missing,
        Err(e) => return Entry::Unusable(format!("cannot stat {}: {e}", path.display())),
    };
    if !meta.is_file() {
        return Entry::Unsafe(format!("{} is not a regular file", path.display()));
    }
    if let Some(reason) = unsafe_location(path, Some(&meta)) {
        return Entry::Unsafe(reason);
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => return Entry::Unusable(format!("cannot read {}: {e}", path.display())),
    };
    match verify_entry(&bytes, key) {
        Ok(()) => {}
        Err(reason) => return Entry::Unusable(format!("{}: {reason}", path.display())),
    }
    let artifact = bytes[HEADER_LEN..].to_vec();
    if Engine::detect_precompiled(&artifact) != Some(Precompiled::Component) {
        return Entry::Unusable(format!("{}: the artifact is not a precompiled component", path.display()));
    }
    Entry::Verified(artifact)
}

fn verify_entry(bytes: &[u8], key: &[u8; 32]) -> Result<(), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("truncated entry ({} bytes, shorter than its header)", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err("not a cache entry (bad magic)".into());
    }
    if &bytes[8..40] != key {
        return Err("the entry belongs to another key".into());
    }
    let len = u64::from_le_bytes(bytes[72..80].try_into().expect("8 bytes"));
    let artifact = &bytes[HEADER_LEN..];
    if artifact.len() as u64 != len {
        return Err(format!("truncated entry ({} artifact bytes, header says {len})", artifact.len()));
    }
    if Sha256::digest(artifact).as_slice() != &bytes[40..72] {
        return Err("checksum mismatch (the artifact is corrupt)".into());
    }
    Ok(())
}

fn store_entry(dir: &Path, path: &Path, key: &[u8; 32], artifact: &[u8]) -> anyhow::Result<()> {
    create_private_dir(dir).with_context(|| format!("cannot create the cache directory {}", dir.display()))?;
    if let Some(reason) = unsafe_location(dir, None) {
        return Err(anyhow!(reason));
    }
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(key);
    header.extend_from_slice(&Sha256::digest(artifact));
    header.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{}.{}.{nanos}.tmp", hex(key), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(&header)?;
        file.write_all(artifact)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow!("cannot write {}: {e}", path.display())
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Why `path` (the cache directory, or an entry with its metadata) must not be used:
/// another user owns it, or users other than its owner may write it. Unix only.
#[cfg(unix)]
fn unsafe_location(path: &Path, meta: Option<&fs::Metadata>) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let owned;
    let meta = match meta {
        Some(m) => m,
        None => match fs::metadata(path) {
            Ok(m) => {
                owned = m;
                &owned
            }
            // A missing directory is created private when the entry is stored.
            Err(_) => return None,
        },
    };
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "{} is writable by other users (mode {:o}); not using the compile cache",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    // Linux: /proc/self belongs to the process's effective user.
    if let Ok(me) = fs::metadata("/proc/self").map(|m| m.uid())
        && meta.uid() != me
    {
        return Some(format!(
            "{} belongs to another user (uid {}); not using the compile cache",
            path.display(),
            meta.uid()
        ));
    }
    None
}

#[cfg(not(unix))]
fn unsafe_location(_path: &Path, _meta: Option<&fs::Metadata>) -> Option<String> {
    None
}

/// Feeds `Hash` output into sha256, so the engine-settings hash is stable across Rust
/// releases (std's `DefaultHasher` promises no such thing).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::BUNDLED_COMPONENT;
    use std::time::Instant;
    use wasmtime::Config;

    fn engine() -> Engine {
        let mut config = Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    fn exports(engine: &Engine, c: &Component) -> Vec<String> {
        let mut names: Vec<String> = c.component_type().exports(engine).map(|(name, _)| name.to_string()).collect();
        names.sort();
        names
    }

    fn only_entry(dir: &Path) -> PathBuf {
        let entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries[0].clone()
    }

    #[test]
    fn miss_then_hit() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (compiled, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(&cache)).unwrap();
        assert_eq!(outcome, CacheOutcome::Miss);
        let entry = only_entry(&cache);
        assert_eq!(
            entry.file_name().unwrap().to_string_lossy(),
            format!("{}.cwasm", cache_key(&engine, BUNDLED_COMPONENT))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "the cache dir is private");
        }
        let (cached, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(&cache)).unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
        assert_eq!(exports(&engine, &compiled), exports(&engine, &cached));
        assert!(
            exports(&engine, &cached).iter().any(|e| e.starts_with("blocklet:migrate/migrator")),
            "{:?}",
            exports(&engine, &cached)
        );
        only_entry(&cache); // no temp files left behind
    }

    /// Replace the single entry with `bytes`, then load: recompiled with a reason containing
    /// `expect`, and the rewritten entry is a hit.
    fn assert_recompiled_after(corrupt: impl FnOnce(&[u8]) -> Vec<u8>, expect: &str) {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(cache)).unwrap();
        assert_eq!(outcome, CacheOutcome::Miss);
        let entry = only_entry(cache);
        let good = fs::read(&entry).unwrap();
        fs::write(&entry, corrupt(&good)).unwrap();
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(cache)).unwrap();
        match outcome {
            CacheOutcome::Recompiled { reason } => {
                assert!(reason.contains(expect), "expected {expect:?} in {reason:?}")
            }
            other => panic!("expected Recompiled, got {other:?}"),
        }
        assert_eq!(fs::read(&entry).unwrap().len(), good.len(), "entry rewritten");
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(cache)).unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
    }

    #[test]
    fn truncated_entry_is_recompiled() {
        assert_recompiled_after(|good| good[..good.len() / 2].to_vec(), "truncated");
    }

    #[test]
    fn entry_shorter_than_its_header_is_recompiled() {
        assert_recompiled_after(|good| good[..10].to_vec(), "truncated");
    }

    #[test]
    fn empty_entry_is_recompiled() {
        assert_recompiled_after(|_| Vec::new(), "truncated");
    }

    #[test]
    fn garbage_entry_is_recompiled() {
        assert_recompiled_after(|good| (0..good.len()).map(|i| (i * 31 % 251) as u8).collect(), "bad magic");
    }

    #[test]
    fn flipped_artifact_byte_is_recompiled() {
        assert_recompiled_after(
            |good| {
                let mut bad = good.to_vec();
                let i = HEADER_LEN + (bad.len() - HEADER_LEN) / 2;
                bad[i] ^= 0x40;
                bad
            },
            "checksum mismatch",
        );
    }

    #[test]
    fn entry_of_another_key_is_recompiled() {
        assert_recompiled_after(
            |good| {
                let mut bad = good.to_vec();
                bad[8] ^= 1;
                bad
            },
            "another key",
        );
    }

    #[test]
    fn checksummed_garbage_is_refused_before_deserializing() {
        // A well-formed header over bytes that are not a wasmtime artifact.
        assert_recompiled_after(
            |good| {
                let artifact = vec![0x7fu8; 4096];
                let mut bad = good[..40].to_vec();
                bad.extend_from_slice(&Sha256::digest(&artifact));
                bad.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
                bad.extend_from_slice(&artifact);
                bad
            },
            "not a precompiled component",
        );
    }

    #[test]
    fn artifact_wasmtime_refuses_is_recompiled() {
        // A real, correctly checksummed artifact compiled by an engine with other settings,
        // stored under this engine's key (as a stale or misplaced entry would be).
        assert_recompiled_after(
            |good| {
                let mut config = Config::new();
                config.wasm_component_model(true).consume_fuel(true);
                let other = Engine::new(&config).unwrap();
                let artifact = other.precompile_component(BUNDLED_COMPONENT).unwrap();
                let mut bad = good[..40].to_vec();
                bad.extend_from_slice(&Sha256::digest(&artifact));
                bad.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
                bad.extend_from_slice(&artifact);
                bad
            },
            "wasmtime refused the cached artifact",
        );
    }

    #[test]
    fn different_engine_settings_use_different_keys() {
        let plain = engine();
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let epochs = Engine::new(&config).unwrap();
        let mut config = Config::new();
        config.wasm_component_model(true).consume_fuel(true);
        let fuel = Engine::new(&config).unwrap();
        let keys = [
            cache_key(&plain, BUNDLED_COMPONENT),
            cache_key(&epochs, BUNDLED_COMPONENT),
            cache_key(&fuel, BUNDLED_COMPONENT),
        ];
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[0], keys[2]);
        assert_ne!(keys[1], keys[2]);
        // the same settings give the same key, engine after engine
        assert_eq!(keys[0], cache_key(&engine(), BUNDLED_COMPONENT));

        let dir = tempfile::tempdir().unwrap();
        let (_, outcome) = load_component(&plain, BUNDLED_COMPONENT, Some(dir.path())).unwrap();
        assert_eq!(outcome, CacheOutcome::Miss);
        let (_, outcome) = load_component(&epochs, BUNDLED_COMPONENT, Some(dir.path())).unwrap();
        assert_eq!(outcome, CacheOutcome::Miss, "another engine's entry is not used");
        let (_, outcome) = load_component(&plain, BUNDLED_COMPONENT, Some(dir.path())).unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
        let (_, outcome) = load_component(&epochs, BUNDLED_COMPONENT, Some(dir.path())).unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
    }

    #[test]
    fn different_components_use_different_keys() {
        let engine = engine();
        let mut other = BUNDLED_COMPONENT.to_vec();
        other.push(0);
        assert_ne!(cache_key(&engine, BUNDLED_COMPONENT), cache_key(&engine, &other));
        assert_eq!(cache_key(&engine, BUNDLED_COMPONENT).len(), 64);
    }

    #[test]
    fn component_sha256_is_hex_sha256() {
        assert_eq!(component_sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(component_sha256(BUNDLED_COMPONENT).len(), 64);
    }

    #[test]
    fn no_cache_dir_is_disabled() {
        let (_, outcome) = load_component(&engine(), BUNDLED_COMPONENT, None).unwrap();
        assert_eq!(outcome, CacheOutcome::Disabled);
    }

    #[test]
    fn invalid_component_is_an_error_not_a_cache_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let Err(e) = load_component(&engine(), b"not wasm", Some(dir.path())) else {
            panic!("compiled garbage");
        };
        assert!(format!("{e:#}").contains("not a valid wasm component"), "{e:#}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unwritable_cache_dir_still_compiles() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        let (_, outcome) = load_component(&engine(), BUNDLED_COMPONENT, Some(&file.join("cache"))).unwrap();
        match outcome {
            CacheOutcome::Uncached { reason } => {
                assert!(reason.contains("cannot create the cache directory"), "{reason}")
            }
            other => panic!("expected Uncached, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn cache_dir_writable_by_others_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(dir.path())).unwrap();
        assert_eq!(outcome, CacheOutcome::Miss);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(dir.path())).unwrap();
        match outcome {
            CacheOutcome::Uncached { reason } => {
                assert!(reason.contains("writable by other users"), "{reason}")
            }
            other => panic!("expected Uncached, got {other:?}"),
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let entry = only_entry(dir.path());
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o666)).unwrap();
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(dir.path())).unwrap();
        assert!(
            matches!(&outcome, CacheOutcome::Uncached { reason } if reason.contains("writable by other users")),
            "{outcome:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_entry_is_not_followed() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(&cache)).unwrap();
        assert_eq!(outcome, CacheOutcome::Miss);
        let entry = only_entry(&cache);
        let elsewhere = dir.path().join("elsewhere.cwasm");
        fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(&cache)).unwrap();
        assert!(
            matches!(&outcome, CacheOutcome::Uncached { reason } if reason.contains("not a regular file")),
            "{outcome:?}"
        );
    }

    #[test]
    fn default_cache_dir_precedence() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(
            default_cache_dir_from(env(&[
                (CACHE_DIR_ENV, "/explicit"),
                ("XDG_CACHE_HOME", "/xdg"),
                ("HOME", "/home/u"),
            ])),
            Some(PathBuf::from("/explicit"))
        );
        assert_eq!(
            default_cache_dir_from(env(&[(CACHE_DIR_ENV, ""), ("HOME", "/home/u")])),
            None,
            "set but empty: no cache"
        );
        assert_eq!(
            default_cache_dir_from(env(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")])),
            Some(PathBuf::from("/xdg/blocklet-migrate"))
        );
        assert_eq!(
            default_cache_dir_from(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/u")])),
            Some(PathBuf::from("/home/u/.cache/blocklet-migrate")),
            "a relative XDG_CACHE_HOME is ignored"
        );
        assert_eq!(
            default_cache_dir_from(env(&[("HOME", "/home/u")])),
            Some(PathBuf::from("/home/u/.cache/blocklet-migrate"))
        );
        assert_eq!(default_cache_dir_from(env(&[])), None);
    }

    #[test]
    fn wasmtime_version_matches_the_lock_file() {
        let lock = include_str!("../../../Cargo.lock");
        let version = lock
            .split("[[package]]")
            .find(|p| p.contains("\nname = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .map(|v| v.trim_end_matches('"'))
            .expect("wasmtime in Cargo.lock");
        assert_eq!(version, WASMTIME_VERSION);
    }

    /// `cargo test --release -p blocklet-migrate component_cache::tests::timing -- --nocapture`
    #[test]
    fn timing_compile_versus_cache_hit() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, None).unwrap();
        let compile = t.elapsed();
        assert_eq!(outcome, CacheOutcome::Disabled);
        let t = Instant::now();
        let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(dir.path())).unwrap();
        let miss = t.elapsed();
        assert_eq!(outcome, CacheOutcome::Miss);
        let mut hits = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let (_, outcome) = load_component(&engine, BUNDLED_COMPONENT, Some(dir.path())).unwrap();
            hits.push(t.elapsed());
            assert_eq!(outcome, CacheOutcome::Hit);
        }
        hits.sort();
        let entry = fs::metadata(only_entry(dir.path())).unwrap().len();
        eprintln!(
            "component cache: {} KiB component, {} KiB entry; compile {compile:?}, miss (compile + store) {miss:?}, hit median {:?} (min {:?})",
            BUNDLED_COMPONENT.len() / 1024,
            entry / 1024,
            hits[2],
            hits[0]
        );
        assert!(hits[2] < compile, "a hit is faster than compiling");
    }
}
