//! `blocklet-migrate component sign FILE --key KEY [-o OUT]` and `component keygen PREFIX`: the
//! operator's side of signed components ([`crate::sandbox::signature`]). A signed file is
//! written whole under a temporary name and renamed, so OUT is never left half-written.

use super::{EXIT_SUCCESS, EXIT_USAGE, console};
use crate::sandbox::signature;
use std::path::{Path, PathBuf};

/// Sign `file` with the secret key in `key`, writing `out` (default: `file`); the exit code.
pub fn sign(file: &Path, key: &Path, out: Option<&Path>) -> u8 {
    match sign_file(file, key, out.unwrap_or(file)) {
        Ok((out, key_id)) => {
            console::success(&format!("{} signed by key id {key_id}", out.display()));
            EXIT_SUCCESS
        }
        Err(e) => {
            console::error(&e);
            EXIT_USAGE
        }
    }
}

fn sign_file(file: &Path, key: &Path, out: &Path) -> Result<(PathBuf, signature::KeyId), String> {
    let key = signature::SigningKey::from_file(key)?;
    let wasm = std::fs::read(file).map_err(|e| format!("cannot read component {}: {e}", file.display()))?;
    let signed = signature::sign(&wasm, &key).map_err(|e| format!("cannot sign {}: {e}", file.display()))?;
    let temp = out.with_file_name(format!(
        ".{}.signing-{}",
        out.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&temp, &signed).and_then(|()| std::fs::rename(&temp, out)).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {}: {e}", out.display())
    })?;
    Ok((out.to_path_buf(), key.key_id()))
}

/// Write a new key pair to `PREFIX.key` and `PREFIX.pub`; the exit code.
pub fn keygen(prefix: &Path) -> u8 {
    match signature::keygen(prefix) {
        Ok((secret, public, key_id)) => {
            console::success(&format!(
                "key id {key_id}: secret key {}, public key {}",
                secret.display(),
                public.display()
            ));
            console::info(&format!(
                "Sign with `blocklet-migrate component sign FILE --key {}`; trust with --trusted-key {} or by copying it into the trusted-keys directory",
                secret.display(),
                public.display()
            ));
            EXIT_SUCCESS
        }
        Err(e) => {
            console::error(&e);
            EXIT_USAGE
        }
    }
}
