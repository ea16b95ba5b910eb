//! Which component files may run: signed by a trusted key, or, under `--allow-unsigned`, unsigned
//! or signed by other keys.
//!
//! `--allow-unsigned` runs a component that no trusted key signed (unsigned, or signed by other
//! keys), with a warning every run. It never admits a component whose signature claims a trusted
//! key but does not verify (modified after signing), nor a malformed one.

use super::format::verify;
use super::keys::TrustedKeys;
use super::{Refusal, Signer};
use std::path::{Path, PathBuf};

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

/// What a bundled component's signature line says.
pub const BUNDLED_SIGNATURE: &str = "none needed: bundled with this binary (trusted)";

impl Admitted {
    /// Who vouches for the component, as `component info` and the report say it.
    pub fn describe(&self) -> String {
        match self {
            Admitted::Signed(signer) => describe(&Ok(signer.clone())),
            Admitted::Unverified(refusal) => {
                format!("{} (run under --allow-unsigned)", describe(&Err(refusal.clone())))
            }
        }
    }

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
