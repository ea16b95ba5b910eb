//! The signature section of a component file: reading and verifying it, and writing it.
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

use super::keys::{KeyId, SigningKey, TrustedKey, TrustedKeys};
use super::{Refusal, Signer};
use sha2::{Digest, Sha256};

/// The custom section holding the signatures.
pub const SECTION_NAME: &str = "signature";

pub(super) const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
pub(super) const SIGNING_DOMAIN: &[u8] = b"wasmsig";
pub(super) const FORMAT_VERSION: u8 = 0x01;
pub(super) const CONTENT_TYPE_MODULE: u8 = 0x01;
pub(super) const HASH_SHA256: u8 = 0x01;
pub(super) const ALG_ED25519: u8 = 0x01;
/// Bounds on what a signature section may list: each signature costs one verification per key.
pub(super) const MAX_SIGNED_HASH_SETS: usize = 16;
pub(super) const MAX_SIGNATURES: usize = 16;
pub(super) const MAX_HASHES_PER_SET: usize = 64;

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

pub(super) fn signed_message(hashes: &[[u8; 32]]) -> Vec<u8> {
    let mut message = SIGNING_DOMAIN.to_vec();
    message.extend_from_slice(&[FORMAT_VERSION, CONTENT_TYPE_MODULE, HASH_SHA256]);
    for hash in hashes {
        message.extend_from_slice(hash);
    }
    message
}

/// One top-level section: bytes `start..end`, its payload from `payload` (after a custom
/// section's name).
pub(super) struct Section {
    pub(super) start: usize,
    pub(super) payload: usize,
    pub(super) end: usize,
    pub(super) is_signature: bool,
}

/// The top-level sections of a component, every size checked against the file.
pub(super) fn sections(wasm: &[u8]) -> Result<Vec<Section>, String> {
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

pub(super) struct SignedHashes {
    hashes: Vec<[u8; 32]>,
    signatures: Vec<SignatureEntry>,
}

pub(super) struct SignatureEntry {
    key_id: KeyId,
    signature: ed25519_compact::Signature,
}

pub(super) fn parse_signature_payload(payload: &[u8]) -> Result<Vec<SignedHashes>, String> {
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
pub(super) struct Reader<'a> {
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

pub(super) fn put_leb(out: &mut Vec<u8>, mut value: usize) {
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

pub(super) fn put_slice(out: &mut Vec<u8>, bytes: &[u8]) {
    put_leb(out, bytes.len());
    out.extend_from_slice(bytes);
}
