//! Signed components: a component file runs only if a key the operator trusts signed it.
//!
//! The key design decision: trust is checked on the file's bytes before anything else touches
//! them (before compilation, the compile cache or the sandbox), by a bounds-checked reader of
//! this file's own that never allocates more than the file holds. The bundled component is part
//! of the binary and is trusted without a signature.
//!
//!
//! | file | concern |
//! |---|---|
//! | `format.rs` | the embedded signature section: reading, verifying and writing it |
//! | `keys.rs` | Ed25519 keys: key ids, PEM files, the trusted keys and where they come from |
//! | `policy.rs` | which component files may run (`--allow-unsigned`), and how that is described |

mod format;
mod keys;
mod policy;
#[cfg(test)]
mod tests;

pub use format::{SECTION_NAME, sign, verify};
pub use keys::{KEY_DIR_ENV, KeyId, SigningKey, TrustedKey, TrustedKeys, keygen};
pub use policy::{Admitted, BUNDLED_SIGNATURE, Policy, describe};

use std::fmt;
use std::path::PathBuf;

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
