//! PostgreSQL database names, exactly as Blocklet Server derives them (`dbPathToDbName`), and
//! the ArcBlock DID check that decides whether an app's directory name is part of the name.

use sha3::{Digest, Keccak256, Keccak384, Keccak512, Sha3_256, Sha3_384, Sha3_512};

/// `core/server.db` → `server_db`; `data/<appDid>/blocklet.db` → `blocklet_db_<appDid>` when
/// the directory is a valid DID, else `blocklet_db` (as the server does at runtime, which is
/// why a collision must be refused rather than renamed).
pub fn database_name(relative_path: &str) -> String {
    let mut parts: Vec<&str> = relative_path.split('/').filter(|p| !p.is_empty()).collect();
    let file = parts.pop().unwrap_or("");
    let base: String = file.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    let base = if base.is_empty() { "postgres".to_string() } else { base };
    match parts.last() {
        Some(dir) if is_valid_did(dir) => format!("{base}_{dir}"),
        _ => base,
    }
}

/// An ArcBlock DID: `z` + base58btc of 2 type bytes, a 20-byte hash and a 4-byte checksum,
/// the checksum being the DID type's hash over the first 22 bytes.
pub fn is_valid_did(s: &str) -> bool {
    let s = s.strip_prefix("did:abt:").unwrap_or(s);
    let Some(body) = s.strip_prefix('z') else {
        return false;
    };
    let Ok(bytes) = bs58::decode(body).into_vec() else {
        return false;
    };
    if bytes.len() != 26 {
        return false;
    }
    let (payload, checksum) = bytes.split_at(22);
    let digest: Vec<u8> = match bytes[1] & 0x1f {
        0 => Keccak256::digest(payload).to_vec(),
        1 => Sha3_256::digest(payload).to_vec(),
        2 => Keccak384::digest(payload).to_vec(),
        3 => Sha3_384::digest(payload).to_vec(),
        4 => Keccak512::digest(payload).to_vec(),
        5 => Sha3_512::digest(payload).to_vec(),
        _ => return false,
    };
    digest[..4] == *checksum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_server() {
        assert_eq!(database_name("core/server.db"), "server_db");
        assert_eq!(database_name("services/service.db"), "service_db");
        assert_eq!(database_name("modules/certificate-manager/module.db"), "module_db");
        assert_eq!(
            database_name("data/zNKqXjErsgbHZH5rW1nusSm7raAyFE94jM64/blocklet.db"),
            "blocklet_db_zNKqXjErsgbHZH5rW1nusSm7raAyFE94jM64"
        );
        assert_eq!(database_name("data/my-app/blocklet.db"), "blocklet_db");
    }

    #[test]
    fn did_checksums_are_verified() {
        assert!(is_valid_did("zNKqXjErsgbHZH5rW1nusSm7raAyFE94jM64"));
        assert!(is_valid_did("zNKrYWaSmXbK1xanN7G2rSU9ak7JUVXrHD9G"));
        assert!(is_valid_did("did:abt:zNKhVWFQpspt3F1i9eYWjHhEtPVixC2n3eb4"));
        assert!(!is_valid_did("zNKqXjErsgbHZH5rW1nusSm7raAyFE94jM65"), "one character off");
        assert!(!is_valid_did("NKqXjErsgbHZH5rW1nusSm7raAyFE94jM64"));
        assert!(!is_valid_did("z0OIl"));
        assert!(!is_valid_did(""));
    }
}
