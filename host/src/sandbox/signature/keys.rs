//! Ed25519 keys: key ids, key files, and the keys the operator trusts.
//!
//! Keys are Ed25519 PEM files as OpenSSL writes them: the secret key PKCS#8 (`BEGIN PRIVATE
//! KEY`), the public key SPKI (`BEGIN PUBLIC KEY`); `blocklet-migrate component keygen PREFIX`
//! writes `PREFIX.key` and `PREFIX.pub`, as do `openssl genpkey -algorithm ed25519 -out k.key`
//! and `openssl pkey -in k.key -pubout -out k.pub`. The trusted keys are every `--trusted-key
//! FILE` and every `*.pub` file of the key directory: `$BLOCKLET_MIGRATE_TRUSTED_KEYS` when set
//! (it must exist), otherwise `$XDG_CONFIG_HOME/blocklet-migrate/trusted-keys` (default
//! `~/.config/…`) when that exists.

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the operator's trusted public keys live, when set.
pub const KEY_DIR_ENV: &str = "BLOCKLET_MIGRATE_TRUSTED_KEYS";

/// A public key's label: 12 bytes, shown in hex.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyId(pub(super) Vec<u8>);

impl KeyId {
    /// `wasmsign2`'s default key id of a public key.
    pub fn of(key: &ed25519_compact::PublicKey) -> KeyId {
        KeyId(hmac_sha256(&key[..], b"key_id")[..12].to_vec())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A public key the operator trusts.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    pub(super) key: ed25519_compact::PublicKey,
    pub id: KeyId,
    pub file: PathBuf,
}

/// A secret key that signs components.
pub struct SigningKey {
    pub(super) secret: ed25519_compact::SecretKey,
}

impl SigningKey {
    /// Read a PEM (PKCS#8) Ed25519 secret key.
    pub fn from_file(path: &Path) -> Result<SigningKey, String> {
        let text = read_key_file(path)?;
        let secret = ed25519_compact::SecretKey::from_pem(&text).map_err(|e| {
            format!(
                "{} is not an Ed25519 secret key (PEM \"PRIVATE KEY\", as `component keygen` writes): {e}",
                path.display()
            )
        })?;
        Ok(SigningKey { secret })
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.secret.public_key())
    }
}

/// Shows the key id only: the secret stays out of logs and panics.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey {{ key_id: {} }}", self.key_id())
    }
}

/// Write a new key pair to `PREFIX.key` (owner-only) and `PREFIX.pub`; never overwrites a file.
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf, KeyId), String> {
    let mut seed = [0u8; ed25519_compact::Seed::BYTES];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness for a new key: {e}"))?;
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
    let secret_file = with_suffix(prefix, "key");
    let public_file = with_suffix(prefix, "pub");
    for file in [&secret_file, &public_file] {
        if file.exists() {
            return Err(format!("{} already exists: not overwriting a key", file.display()));
        }
    }
    write_new(&secret_file, pair.sk.to_pem().as_bytes(), 0o600)?;
    write_new(&public_file, pair.pk.to_pem().as_bytes(), 0o644)?;
    Ok((secret_file, public_file, KeyId::of(&pair.pk)))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Key files are a few hundred bytes; anything much larger is not one.
fn read_key_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
    if meta.len() > 16 * 1024 {
        return Err(format!("{} is {} bytes: not a PEM key file", path.display(), meta.len()));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read key {}: {e}", path.display()))
}

/// The keys the operator trusts.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    pub(super) keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// `files` (from `--trusted-key`) and every `*.pub` of the key directory (see the module doc).
    pub fn load(files: &[PathBuf]) -> Result<TrustedKeys, String> {
        let mut all: Vec<PathBuf> = files.to_vec();
        if let Some(dir) = key_dir()? {
            let entries =
                std::fs::read_dir(&dir).map_err(|e| format!("cannot read key directory {}: {e}", dir.display()))?;
            let mut found = Vec::new();
            for entry in entries {
                let path = entry.map_err(|e| format!("cannot read key directory {}: {e}", dir.display()))?.path();
                if path.extension().is_some_and(|x| x == "pub") {
                    found.push(path);
                }
            }
            found.sort();
            all.extend(found);
        }
        let mut keys = Vec::new();
        for file in all {
            keys.push(TrustedKey::from_file(&file)?);
        }
        Ok(TrustedKeys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl TrustedKey {
    /// Read a PEM (SPKI) Ed25519 public key.
    pub fn from_file(path: &Path) -> Result<TrustedKey, String> {
        let text = read_key_file(path)?;
        let key = ed25519_compact::PublicKey::from_pem(&text).map_err(|e| {
            format!(
                "{} is not an Ed25519 public key (PEM \"PUBLIC KEY\", as `component keygen` writes): {e}",
                path.display()
            )
        })?;
        key.validate().map_err(|e| format!("{} is a weak or non-canonical Ed25519 public key: {e}", path.display()))?;
        Ok(TrustedKey { id: KeyId::of(&key), key, file: path.to_path_buf() })
    }
}

/// The configured key directory, if any.
fn key_dir() -> Result<Option<PathBuf>, String> {
    if let Some(dir) = std::env::var_os(KEY_DIR_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            return Err(format!("{KEY_DIR_ENV}={} is not a directory", dir.display()));
        }
        return Ok(Some(dir));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|h| PathBuf::from(h).join(".config")));
    Ok(config.map(|c| c.join("blocklet-migrate").join("trusted-keys")).filter(|d| d.is_dir()))
}

/// HMAC-SHA256 (RFC 2104) with a key of at most one block.
pub(super) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    assert!(key.len() <= 64, "an HMAC key longer than the SHA-256 block");
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner: [u8; 32] = Sha256::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(message).finalize().into();
    Sha256::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize().into()
}
