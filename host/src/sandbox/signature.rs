//! Signed components: a component file runs only if a key the operator trusts signed it.
//!
//! The key design decision: trust is checked on the file's bytes before anything else touches
//! them (before compilation, the compile cache or the sandbox), by a bounds-checked reader of
//! this file's own that never allocates more than the file holds. The bundled component is part
//! of the binary and is trusted without a signature.
//!
//! # Signature format
//!
//! The embedded signature of the WebAssembly signatures proposal, as `wasmsign2` writes it, so
//! `wasmsign2 sign` / `wasmsign2 verify` and `blocklet-migrate component sign` interoperate:
//!
//! ```text
//! signed component = header  signature-section  content
//! header           = 00 61 73 6d 0d 00 01 00          (a component; core modules are refused)
//! signature-section= 00 size:leb128  09 "signature"  payload      (a custom section, the FIRST one)
//! payload          = 01 (format version)  01 (content type: module)  01 (hash: SHA-256)
//!                    count:leb128  count × ( len:leb128  signed-hashes )
//! signed-hashes    = n:leb128  n × hash[32]   m:leb128  m × ( len:leb128  signature )
//! signature        = key-id-len:leb128 key-id   01 (Ed25519)   64:leb128 ed25519-signature[64]
//! ```
//!
//! `content` is every byte after the signature section, and a signature is valid when it is an
//! Ed25519 signature of `"wasmsig" 01 01 01 SHA-256(content)` by a trusted key over exactly one
//! hash, that of `content` (no partial signatures). The 8-byte header is outside the hash, as in
//! the proposal; only the component header is accepted, so it cannot vary. A component holds at
//! most one `signature` section, and it must come first: a signature section anywhere else, a
//! second one, or a truncated section is refused, signed or not.
//!
//! The key id is a label, not a credential: the first 12 bytes of HMAC-SHA256 (key: the 32-byte
//! public key, message: `key_id`), in hex — `wasmsign2`'s default key id. It is not covered by
//! the signature, so a signature counts only if its key id is empty or that of the key that
//! made it (as in `wasmsign2`): a relabelled signature is refused, and a forged label gains
//! nothing, since each signature is checked against the trusted keys themselves.
//!
//! # Keys and trust
//!
//! Keys are Ed25519 PEM files as OpenSSL writes them: the secret key PKCS#8 (`BEGIN PRIVATE
//! KEY`), the public key SPKI (`BEGIN PUBLIC KEY`); `blocklet-migrate component keygen PREFIX`
//! writes `PREFIX.key` and `PREFIX.pub`, as do `openssl genpkey -algorithm ed25519 -out k.key`
//! and `openssl pkey -in k.key -pubout -out k.pub`. The trusted keys are every `--trusted-key
//! FILE` and every `*.pub` file of the key directory: `$BLOCKLET_MIGRATE_TRUSTED_KEYS` when set
//! (it must exist), otherwise `$XDG_CONFIG_HOME/blocklet-migrate/trusted-keys` (default
//! `~/.config/…`) when that exists.
//!
//! `--allow-unsigned` runs a component that no trusted key signed (unsigned, or signed by other
//! keys), with a warning every run. It never admits a component whose signature claims a trusted
//! key but does not verify (modified after signing), nor a malformed one.

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// The custom section holding the signatures.
pub const SECTION_NAME: &str = "signature";
/// Where the operator's trusted public keys live, when set.
pub const KEY_DIR_ENV: &str = "BLOCKLET_MIGRATE_TRUSTED_KEYS";

const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const SIGNING_DOMAIN: &[u8] = b"wasmsig";
const FORMAT_VERSION: u8 = 0x01;
const CONTENT_TYPE_MODULE: u8 = 0x01;
const HASH_SHA256: u8 = 0x01;
const ALG_ED25519: u8 = 0x01;
/// Bounds on what a signature section may list: each signature costs one verification per key.
const MAX_SIGNED_HASH_SETS: usize = 16;
const MAX_SIGNATURES: usize = 16;
const MAX_HASHES_PER_SET: usize = 64;

/// A public key's label: 12 bytes, shown in hex.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyId(Vec<u8>);

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

/// Why a component file is not admitted as signed by a trusted key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Refusal {
    /// No signature section.
    Unsigned,
    /// Signed, but by no key the operator trusts.
    Untrusted { key_ids: Vec<KeyId> },
    /// A signature names or is by a trusted key, yet does not hold for these bytes.
    DoesNotVerify { key_id: KeyId, reason: String },
    /// Not a component, a truncated section, or a signature section in the wrong place or form.
    Malformed(String),
}

impl Refusal {
    /// Whether `--allow-unsigned` lets such a component run.
    pub fn allowed_unsigned(&self) -> bool {
        matches!(self, Refusal::Unsigned | Refusal::Untrusted { .. })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unsigned => f.write_str("it is unsigned"),
            Refusal::Untrusted { key_ids } => {
                let ids: Vec<String> = key_ids.iter().map(|k| k.to_string()).collect();
                write!(f, "it is signed by key id {}, which is not a trusted key", ids.join(", "))
            }
            Refusal::DoesNotVerify { key_id, reason } => {
                write!(f, "its signature by trusted key id {key_id} does not verify: {reason}")
            }
            Refusal::Malformed(why) => write!(f, "its signature cannot be checked: {why}"),
        }
    }
}

/// The trusted key that signed a component.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Signer {
    pub key_id: KeyId,
    /// The file the key was loaded from.
    pub key_file: PathBuf,
}

/// A public key the operator trusts.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    key: ed25519_compact::PublicKey,
    pub id: KeyId,
    pub file: PathBuf,
}

/// A secret key that signs components.
pub struct SigningKey {
    secret: ed25519_compact::SecretKey,
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
    keys: Vec<TrustedKey>,
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

/// What the operator allows to run: the trusted keys, and whether `--allow-unsigned` was given.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub trusted: TrustedKeys,
    pub allow_unsigned: bool,
}

/// A component file the policy lets run.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Admitted {
    Signed(Signer),
    /// Run under `--allow-unsigned`; the refusal it would otherwise get.
    Unverified(Refusal),
}

impl Policy {
    pub fn load(trusted_key_files: &[PathBuf], allow_unsigned: bool) -> Result<Policy, String> {
        Ok(Policy { trusted: TrustedKeys::load(trusted_key_files)?, allow_unsigned })
    }

    /// Whether the component `wasm`, read from `file`, may run; the error names the file and why not.
    pub fn admit(&self, file: &Path, wasm: &[u8]) -> Result<Admitted, String> {
        match verify(wasm, &self.trusted) {
            Ok(signer) => Ok(Admitted::Signed(signer)),
            Err(refusal) if self.allow_unsigned && refusal.allowed_unsigned() => Ok(Admitted::Unverified(refusal)),
            Err(refusal) => {
                let hint = if !refusal.allowed_unsigned() {
                    ""
                } else if self.trusted.is_empty() {
                    "; no key is trusted: pass --trusted-key FILE or put its .pub file in the key directory \
                     (or run it anyway with --allow-unsigned)"
                } else {
                    "; sign it with a trusted key (`blocklet-migrate component sign`), trust its key with \
                     --trusted-key, or run it anyway with --allow-unsigned"
                };
                Err(format!("component {} refused: {refusal}{hint}", file.display()))
            }
        }
    }
}

impl Admitted {
    /// The warning `--allow-unsigned` prints every run, or none for a signed component.
    pub fn warning(&self, file: &Path) -> Option<String> {
        match self {
            Admitted::Signed(_) => None,
            Admitted::Unverified(refusal) => Some(format!(
                "--allow-unsigned: running component {} although {refusal}; nothing vouches for its code",
                file.display()
            )),
        }
    }
}

/// The one line `component info` shows about a component file's signature.
pub fn describe(verdict: &Result<Signer, Refusal>) -> String {
    match verdict {
        Ok(signer) => format!("signed by key id {} (trusted: {})", signer.key_id, signer.key_file.display()),
        Err(Refusal::Unsigned) => "unsigned".into(),
        Err(Refusal::Untrusted { key_ids }) => {
            let ids: Vec<String> = key_ids.iter().map(|k| k.to_string()).collect();
            format!("signed by key id {} (not trusted)", ids.join(", "))
        }
        Err(refusal @ (Refusal::DoesNotVerify { .. } | Refusal::Malformed(_))) => format!("INVALID: {refusal}"),
    }
}

/// The trusted key whose signature covers exactly these bytes, or why there is none.
pub fn verify(wasm: &[u8], trusted: &TrustedKeys) -> Result<Signer, Refusal> {
    let sections = sections(wasm).map_err(Refusal::Malformed)?;
    let signatures: Vec<&Section> = sections.iter().filter(|s| s.is_signature).collect();
    let section = match signatures.as_slice() {
        [] => return Err(Refusal::Unsigned),
        [only] if only.start == COMPONENT_HEADER.len() => *only,
        [only] => {
            return Err(Refusal::Malformed(format!(
                "the signature section at byte {} is not the first section (it must precede everything it signs)",
                only.start
            )));
        }
        several => {
            let at: Vec<String> = several.iter().map(|s| s.start.to_string()).collect();
            return Err(Refusal::Malformed(format!(
                "{} signature sections (at bytes {}); a signed component has exactly one",
                several.len(),
                at.join(", ")
            )));
        }
    };
    let sets = parse_signature_payload(&wasm[section.payload..section.end]).map_err(Refusal::Malformed)?;
    let content_hash: [u8; 32] = Sha256::digest(&wasm[section.end..]).into();
    let mut stale: Option<&TrustedKey> = None;
    let mut mislabelled: Option<(&TrustedKey, &KeyId)> = None;
    for set in &sets {
        let message = signed_message(&set.hashes);
        for entry in &set.signatures {
            for key in &trusted.keys {
                if key.key.verify(&message, &entry.signature).is_err() {
                    continue;
                }
                if !entry.key_id.0.is_empty() && entry.key_id != key.id {
                    mislabelled = Some((key, &entry.key_id));
                } else if set.hashes == [content_hash] {
                    return Ok(Signer { key_id: key.id.clone(), key_file: key.file.clone() });
                } else {
                    stale = Some(key);
                }
            }
        }
    }
    if let Some(key) = stale {
        return Err(Refusal::DoesNotVerify {
            key_id: key.id.clone(),
            reason: "the component's bytes are not the ones that key signed (modified after signing)".into(),
        });
    }
    if let Some((key, label)) = mislabelled {
        return Err(Refusal::DoesNotVerify {
            key_id: key.id.clone(),
            reason: format!("the signature carries key id {label}, not that key's (modified after signing)"),
        });
    }
    let key_ids: Vec<KeyId> = sets.iter().flat_map(|s| s.signatures.iter().map(|e| e.key_id.clone())).collect();
    if let Some(claimed) = trusted.keys.iter().find(|k| key_ids.contains(&k.id)) {
        return Err(Refusal::DoesNotVerify {
            key_id: claimed.id.clone(),
            reason: "the signature bytes are not that key's signature".into(),
        });
    }
    if key_ids.is_empty() {
        return Err(Refusal::Malformed("the signature section holds no signature".into()));
    }
    Err(Refusal::Untrusted { key_ids })
}

/// `wasm` with one signature by `key` over all of it, replacing any signature it had.
pub fn sign(wasm: &[u8], key: &SigningKey) -> Result<Vec<u8>, String> {
    let sections = sections(wasm)?;
    let mut content = Vec::with_capacity(wasm.len());
    for s in sections.iter().filter(|s| !s.is_signature) {
        content.extend_from_slice(&wasm[s.start..s.end]);
    }
    let hash: [u8; 32] = Sha256::digest(&content).into();
    let signature = key.secret.sign(signed_message(&[hash]), None);

    let mut entry = Vec::new();
    put_slice(&mut entry, &key.key_id().0);
    entry.push(ALG_ED25519);
    put_slice(&mut entry, &signature[..]);
    let mut set = Vec::new();
    put_leb(&mut set, 1);
    set.extend_from_slice(&hash);
    put_leb(&mut set, 1);
    put_slice(&mut set, &entry);
    let mut payload = vec![FORMAT_VERSION, CONTENT_TYPE_MODULE, HASH_SHA256];
    put_leb(&mut payload, 1);
    put_slice(&mut payload, &set);

    let mut body = Vec::new();
    put_slice(&mut body, SECTION_NAME.as_bytes());
    body.extend_from_slice(&payload);
    let mut out = Vec::with_capacity(COMPONENT_HEADER.len() + body.len() + 6 + content.len());
    out.extend_from_slice(&COMPONENT_HEADER);
    out.push(0);
    put_slice(&mut out, &body);
    out.extend_from_slice(&content);
    Ok(out)
}

fn signed_message(hashes: &[[u8; 32]]) -> Vec<u8> {
    let mut message = SIGNING_DOMAIN.to_vec();
    message.extend_from_slice(&[FORMAT_VERSION, CONTENT_TYPE_MODULE, HASH_SHA256]);
    for hash in hashes {
        message.extend_from_slice(hash);
    }
    message
}

/// One top-level section: bytes `start..end`, its payload from `payload` (after a custom
/// section's name).
struct Section {
    start: usize,
    payload: usize,
    end: usize,
    is_signature: bool,
}

/// The top-level sections of a component, every size checked against the file.
fn sections(wasm: &[u8]) -> Result<Vec<Section>, String> {
    if wasm.len() < COMPONENT_HEADER.len() || wasm[..4] != COMPONENT_HEADER[..4] {
        return Err("not a WebAssembly file (no \\0asm header)".into());
    }
    if wasm[..8] != COMPONENT_HEADER {
        return Err(format!(
            "not a WebAssembly component (header version/layer {:02x?}, a component has {:02x?})",
            &wasm[4..8],
            &COMPONENT_HEADER[4..]
        ));
    }
    let mut sections = Vec::new();
    let mut reader = Reader { bytes: wasm, pos: COMPONENT_HEADER.len() };
    while reader.pos < wasm.len() {
        let start = reader.pos;
        let id = reader.byte().map_err(|e| format!("section at byte {start}: {e}"))?;
        let size = reader.leb().map_err(|e| format!("section at byte {start}: size: {e}"))? as usize;
        let body = reader.pos;
        if size > wasm.len() - body {
            return Err(format!(
                "section at byte {start} is truncated: it declares {size} bytes, {} remain",
                wasm.len() - body
            ));
        }
        let end = body + size;
        let (payload, is_signature) = if id == 0 {
            let mut name = Reader { bytes: &wasm[..end], pos: body };
            let len = name.leb().map_err(|e| format!("custom section at byte {start}: name: {e}"))? as usize;
            let name_bytes = name.take(len).map_err(|e| format!("custom section at byte {start}: name: {e}"))?;
            (name.pos, name_bytes == SECTION_NAME.as_bytes())
        } else {
            (body, false)
        };
        sections.push(Section { start, payload, end, is_signature });
        reader.pos = end;
    }
    Ok(sections)
}

struct SignedHashes {
    hashes: Vec<[u8; 32]>,
    signatures: Vec<SignatureEntry>,
}

struct SignatureEntry {
    key_id: KeyId,
    signature: ed25519_compact::Signature,
}

fn parse_signature_payload(payload: &[u8]) -> Result<Vec<SignedHashes>, String> {
    let mut r = Reader { bytes: payload, pos: 0 };
    let header = [r.byte()?, r.byte()?, r.byte()?];
    if header != [FORMAT_VERSION, CONTENT_TYPE_MODULE, HASH_SHA256] {
        return Err(format!(
            "unsupported signature format {header:02x?} (version 1, content type 1, SHA-256 expected)"
        ));
    }
    let count = r.leb()? as usize;
    if count > MAX_SIGNED_HASH_SETS {
        return Err(format!("{count} signed hash sets (at most {MAX_SIGNED_HASH_SETS})"));
    }
    let mut sets = Vec::new();
    let mut signature_count = 0;
    for _ in 0..count {
        let len = r.leb()? as usize;
        let mut s = Reader { bytes: r.take(len)?, pos: 0 };
        let n = s.leb()? as usize;
        if n > MAX_HASHES_PER_SET {
            return Err(format!("{n} hashes in one set (at most {MAX_HASHES_PER_SET})"));
        }
        let mut hashes = Vec::new();
        for _ in 0..n {
            hashes.push(<[u8; 32]>::try_from(s.take(32)?).expect("took 32 bytes"));
        }
        let m = s.leb()? as usize;
        signature_count += m;
        if signature_count > MAX_SIGNATURES {
            return Err(format!("more than {MAX_SIGNATURES} signatures"));
        }
        let mut signatures = Vec::new();
        for _ in 0..m {
            let len = s.leb()? as usize;
            let mut e = Reader { bytes: s.take(len)?, pos: 0 };
            let key_id_len = e.leb()? as usize;
            let key_id = KeyId(e.take(key_id_len)?.to_vec());
            let alg = e.byte()?;
            if alg != ALG_ED25519 {
                return Err(format!(
                    "a signature uses algorithm {alg:#04x}; only Ed25519 ({ALG_ED25519:#04x}) is known"
                ));
            }
            let sig_len = e.leb()? as usize;
            let signature = ed25519_compact::Signature::from_slice(e.take(sig_len)?)
                .map_err(|_| format!("a signature is {sig_len} bytes, an Ed25519 signature 64"))?;
            e.end("a signature entry")?;
            signatures.push(SignatureEntry { key_id, signature });
        }
        s.end("a signed hash set")?;
        sets.push(SignedHashes { hashes, signatures });
    }
    r.end("the signature section")?;
    Ok(sets)
}

/// A cursor whose every read is checked against the bytes it has.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| format!("ends at byte {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    /// An unsigned LEB128 number of at most 32 bits.
    fn leb(&mut self) -> Result<u32, String> {
        let mut value: u64 = 0;
        for i in 0..5 {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| "a number larger than 32 bits".to_string());
            }
        }
        Err("a number longer than 5 bytes".into())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if len > self.bytes.len() - self.pos {
            return Err(format!("{len} bytes declared, {} remain", self.bytes.len() - self.pos));
        }
        self.pos += len;
        Ok(&self.bytes[self.pos - len..self.pos])
    }

    fn end(&self, what: &str) -> Result<(), String> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            extra => Err(format!("{extra} unexpected bytes at the end of {what}")),
        }
    }
}

fn put_leb(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_slice(out: &mut Vec<u8>, bytes: &[u8]) {
    put_leb(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// HMAC-SHA256 (RFC 2104) with a key of at most one block.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    assert!(key.len() <= 64, "an HMAC key longer than the SHA-256 block");
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner: [u8; 32] = Sha256::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(message).finalize().into();
    Sha256::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway key pair made with `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`.
    const OPENSSL_SECRET: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIFVh+abkj+zxDYTlyl5MscZHDhT5/mltj5Z9mJBwQB7M\n\
        -----END PRIVATE KEY-----\n";
    const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAvzK8UO9Bf5ptdFICpcRb4n0RvpqWwVfyGJsLHtHGhjQ=\n\
        -----END PUBLIC KEY-----\n";
    /// `echo -n key_id | openssl dgst -sha256 -mac HMAC -macopt hexkey:<public key>`, first 12 bytes.
    const OPENSSL_KEY_ID: &str = "2f98c19329dbca1c9b0a6288";

    fn pair(seed: u8) -> (SigningKey, TrustedKey) {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
        let trusted = TrustedKey { id: KeyId::of(&kp.pk), key: kp.pk, file: PathBuf::from(format!("key-{seed}.pub")) };
        (SigningKey { secret: kp.sk }, trusted)
    }

    fn trusting(keys: &[&TrustedKey]) -> TrustedKeys {
        TrustedKeys { keys: keys.iter().map(|k| (*k).clone()).collect() }
    }

    fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        put_slice(&mut body, name.as_bytes());
        body.extend_from_slice(payload);
        let mut out = vec![0];
        put_slice(&mut out, &body);
        out
    }

    /// A small component-shaped file: header, a custom section, two opaque sections.
    fn component() -> Vec<u8> {
        let mut wasm = COMPONENT_HEADER.to_vec();
        wasm.extend(custom_section("producers", b"blocklet-migrate tests"));
        wasm.extend([1, 3, 0xaa, 0xbb, 0xcc]);
        wasm.extend([7, 200, 1]);
        wasm.extend((0..200u8).collect::<Vec<_>>());
        wasm
    }

    /// The byte offset where the signed content starts (just after the signature section).
    fn content_start(signed: &[u8]) -> usize {
        sections(signed).unwrap()[0].end
    }

    #[test]
    fn a_signed_component_verifies_with_its_key_and_keeps_its_content() {
        let (key, trusted) = pair(1);
        let wasm = component();
        let signed = sign(&wasm, &key).unwrap();
        let signer = verify(&signed, &trusting(&[&trusted])).unwrap();
        assert_eq!(signer, Signer { key_id: trusted.id.clone(), key_file: trusted.file.clone() });
        assert_eq!(&signed[..8], &wasm[..8]);
        assert_eq!(&signed[content_start(&signed)..], &wasm[8..], "signing changed the content");
    }

    #[test]
    fn the_bundled_component_signs_and_verifies() {
        let (key, trusted) = pair(2);
        let signed = sign(crate::sandbox::BUNDLED_COMPONENT, &key).unwrap();
        assert_eq!(verify(&signed, &trusting(&[&trusted])).unwrap().key_id, trusted.id);
        assert_eq!(verify(crate::sandbox::BUNDLED_COMPONENT, &trusting(&[&trusted])), Err(Refusal::Unsigned));
    }

    #[test]
    fn re_signing_replaces_the_signature() {
        let (first, first_trusted) = pair(3);
        let (second, second_trusted) = pair(4);
        let twice = sign(&sign(&component(), &first).unwrap(), &second).unwrap();
        assert_eq!(sections(&twice).unwrap().iter().filter(|s| s.is_signature).count(), 1);
        assert_eq!(verify(&twice, &trusting(&[&second_trusted])).unwrap().key_id, second_trusted.id);
        assert_eq!(
            verify(&twice, &trusting(&[&first_trusted])),
            Err(Refusal::Untrusted { key_ids: vec![second_trusted.id.clone()] })
        );
    }

    #[test]
    fn an_unsigned_component_is_refused() {
        let (_, trusted) = pair(5);
        assert_eq!(verify(&component(), &trusting(&[&trusted])), Err(Refusal::Unsigned));
        assert_eq!(verify(&component(), &TrustedKeys::default()), Err(Refusal::Unsigned));
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let (key, trusted) = pair(6);
        let keys = trusting(&[&trusted]);
        let signed = sign(&component(), &key).unwrap();
        for i in 0..signed.len() {
            let mut tampered = signed.clone();
            tampered[i] ^= 0x01;
            let verdict = verify(&tampered, &keys);
            assert!(verdict.is_err(), "flipping byte {i} of {} was not noticed", signed.len());
        }
        // Content bytes: the refusal says the trusted key's signature no longer holds.
        let mut tampered = signed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x80;
        assert!(matches!(verify(&tampered, &keys), Err(Refusal::DoesNotVerify { key_id, .. }) if key_id == trusted.id));
        // A signature byte: the key id still names the trusted key, the signature is not its.
        let start = content_start(&signed);
        let mut tampered = signed.clone();
        tampered[start - 1] ^= 0x01;
        assert!(matches!(verify(&tampered, &keys), Err(Refusal::DoesNotVerify { key_id, .. }) if key_id == trusted.id));
    }

    #[test]
    fn bytes_added_or_removed_are_refused() {
        let (key, trusted) = pair(7);
        let keys = trusting(&[&trusted]);
        let signed = sign(&component(), &key).unwrap();
        let mut appended = signed.clone();
        appended.extend(custom_section("extra", b"smuggled"));
        assert!(matches!(verify(&appended, &keys), Err(Refusal::DoesNotVerify { .. })));
        let mut cut = signed.clone();
        cut.truncate(cut.len() - 203);
        assert_eq!(sections(&cut).unwrap().last().unwrap().end, cut.len(), "cut at a section boundary");
        assert!(matches!(verify(&cut, &keys), Err(Refusal::DoesNotVerify { .. })));
    }

    #[test]
    fn a_signature_by_another_key_is_refused_naming_its_key_id() {
        let (stranger, stranger_key) = pair(8);
        let (_, trusted) = pair(9);
        let signed = sign(&component(), &stranger).unwrap();
        let refusal = verify(&signed, &trusting(&[&trusted])).unwrap_err();
        assert_eq!(refusal, Refusal::Untrusted { key_ids: vec![stranger_key.id.clone()] });
        assert!(refusal.to_string().contains(&stranger_key.id.to_string()), "{refusal}");
        assert!(refusal.allowed_unsigned());
    }

    #[test]
    fn a_forged_key_id_does_not_make_a_signature_trusted() {
        let (stranger, _) = pair(10);
        let (_, trusted) = pair(11);
        let mut signed = sign(&component(), &stranger).unwrap();
        // The key id is the 12 bytes just before the algorithm byte and the 64-byte signature.
        let start = content_start(&signed);
        let id_at = start - 64 - 1 - 1 - 12;
        signed[id_at..id_at + 12].copy_from_slice(&trusted.id.0);
        let refusal = verify(&signed, &trusting(&[&trusted])).unwrap_err();
        assert!(matches!(&refusal, Refusal::DoesNotVerify { key_id, .. } if *key_id == trusted.id), "{refusal:?}");
        assert!(!refusal.allowed_unsigned());
    }

    #[test]
    fn a_truncated_signature_section_is_refused() {
        let (key, trusted) = pair(12);
        let keys = trusting(&[&trusted]);
        let signed = sign(&component(), &key).unwrap();
        let start = content_start(&signed);
        // The file ends inside the signature section.
        for cut in [9, 10, 12, 20, start - 1] {
            let refusal = verify(&signed[..cut], &keys).unwrap_err();
            assert!(matches!(refusal, Refusal::Malformed(_)), "cut at {cut}: {refusal:?}");
        }
        // The section's declared size is shorter than its payload: the signature is cut short.
        let mut short = signed.clone();
        let body = (u32::from(short[9]) & 0x7f) | ((u32::from(short[10]) & 0x7f) << 7);
        assert!(short[9] & 0x80 != 0 && short[10] & 0x80 == 0, "a two-byte section size");
        let shorter = body - 10;
        short[9] = (shorter & 0x7f) as u8 | 0x80;
        short[10] = (shorter >> 7) as u8;
        let refusal = verify(&short, &keys).unwrap_err();
        assert!(matches!(refusal, Refusal::Malformed(_)), "{refusal:?}");
    }

    #[test]
    fn two_signature_sections_are_refused() {
        let (key, trusted) = pair(13);
        let keys = trusting(&[&trusted]);
        let signed = sign(&component(), &key).unwrap();
        let start = content_start(&signed);
        let mut doubled = signed[..start].to_vec();
        doubled.extend_from_slice(&signed[8..]);
        let refusal = verify(&doubled, &keys).unwrap_err();
        assert!(matches!(&refusal, Refusal::Malformed(m) if m.contains("2 signature sections")), "{refusal:?}");
        assert!(!refusal.allowed_unsigned());
    }

    #[test]
    fn a_signature_section_after_other_sections_is_refused() {
        let (key, trusted) = pair(14);
        let wasm = component();
        let signed = sign(&wasm, &key).unwrap();
        let start = content_start(&signed);
        let mut moved = wasm[..8].to_vec();
        moved.extend_from_slice(&signed[start..]);
        moved.extend_from_slice(&signed[8..start]);
        let refusal = verify(&moved, &trusting(&[&trusted])).unwrap_err();
        assert!(matches!(&refusal, Refusal::Malformed(m) if m.contains("not the first section")), "{refusal:?}");
        // In the middle, too.
        let mut middle = wasm[..8].to_vec();
        middle.extend(custom_section("producers", b"blocklet-migrate tests"));
        middle.extend_from_slice(&signed[8..start]);
        middle.extend_from_slice(&wasm[8 + custom_section("producers", b"blocklet-migrate tests").len()..]);
        assert!(matches!(verify(&middle, &trusting(&[&trusted])), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn a_core_module_or_a_truncated_file_is_malformed() {
        let (_, trusted) = pair(15);
        let keys = trusting(&[&trusted]);
        let mut module = component();
        module[4..8].copy_from_slice(&[1, 0, 0, 0]);
        assert!(
            matches!(verify(&module, &keys), Err(Refusal::Malformed(m)) if m.contains("not a WebAssembly component"))
        );
        assert!(matches!(verify(b"\0as", &keys), Err(Refusal::Malformed(_))));
        // A section declaring 4 GiB in a small file is refused without allocating it.
        let mut huge = COMPONENT_HEADER.to_vec();
        huge.extend([0, 0xff, 0xff, 0xff, 0xff, 0x0f, 9]);
        assert!(matches!(verify(&huge, &keys), Err(Refusal::Malformed(m)) if m.contains("truncated")));
        assert!(sign(&huge, &pair(15).0).is_err());
    }

    #[test]
    fn openssl_keys_load_and_their_key_id_is_wasmsign2s() {
        let dir = tempfile::tempdir().unwrap();
        let (secret_file, public_file) = (dir.path().join("k.key"), dir.path().join("k.pub"));
        std::fs::write(&secret_file, OPENSSL_SECRET).unwrap();
        std::fs::write(&public_file, OPENSSL_PUBLIC).unwrap();
        let key = SigningKey::from_file(&secret_file).unwrap();
        let trusted = TrustedKey::from_file(&public_file).unwrap();
        assert_eq!(trusted.id.to_string(), OPENSSL_KEY_ID);
        assert_eq!(key.key_id(), trusted.id);
        let signed = sign(&component(), &key).unwrap();
        assert_eq!(verify(&signed, &trusting(&[&trusted])).unwrap().key_file, public_file);
        // A secret key is not a public key, and the reverse.
        assert!(TrustedKey::from_file(&secret_file).unwrap_err().contains("k.key"));
        assert!(SigningKey::from_file(&public_file).unwrap_err().contains("k.pub"));
    }

    #[test]
    fn keygen_writes_a_pair_that_signs_and_verifies_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("release");
        let (secret_file, public_file, id) = keygen(&prefix).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777, 0o600);
        let key = SigningKey::from_file(&secret_file).unwrap();
        let trusted = TrustedKey::from_file(&public_file).unwrap();
        assert_eq!((key.key_id(), trusted.id.clone()), (id.clone(), id));
        let signed = sign(&component(), &key).unwrap();
        assert!(verify(&signed, &trusting(&[&trusted])).is_ok());
        let before = std::fs::read(&secret_file).unwrap();
        assert!(keygen(&prefix).unwrap_err().contains("already exists"));
        assert_eq!(std::fs::read(&secret_file).unwrap(), before);
    }

    #[test]
    fn the_policy_admits_unsigned_components_only_with_allow_unsigned() {
        let (key, trusted) = pair(16);
        let (stranger, _) = pair(17);
        let file = Path::new("/opt/x.wasm");
        let strict = Policy { trusted: trusting(&[&trusted]), allow_unsigned: false };
        let lenient = Policy { allow_unsigned: true, ..strict.clone() };
        let unsigned = component();
        let err = strict.admit(file, &unsigned).unwrap_err();
        assert!(err.contains("/opt/x.wasm") && err.contains("unsigned") && err.contains("--allow-unsigned"), "{err}");
        let admitted = lenient.admit(file, &unsigned).unwrap();
        assert_eq!(admitted, Admitted::Unverified(Refusal::Unsigned));
        assert!(admitted.warning(file).unwrap().contains("/opt/x.wasm"));
        let foreign = sign(&unsigned, &stranger).unwrap();
        assert!(strict.admit(file, &foreign).unwrap_err().contains("not a trusted key"));
        assert!(matches!(lenient.admit(file, &foreign), Ok(Admitted::Unverified(Refusal::Untrusted { .. }))));
        let signed = sign(&unsigned, &key).unwrap();
        let admitted = lenient.admit(file, &signed).unwrap();
        assert!(matches!(admitted, Admitted::Signed(_)) && admitted.warning(file).is_none());
        // Tampered: refused even with --allow-unsigned.
        let mut tampered = signed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(lenient.admit(file, &tampered).unwrap_err().contains("does not verify"));
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
