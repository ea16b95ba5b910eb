//! The service's configuration file: where the queue lives, the PostgreSQL servers tenants may
//! migrate into or out of (their credentials stay here, never in a response or a log line), the
//! component files the service may run (each pinned by sha256), and the tenants.
//!
//! A tenant is an API token (stored as its sha256: the token is a random 256-bit secret, so a
//! plain digest is enough and comparing digests takes the same time for every token), the
//! directory its data dirs must lie under, the servers and components it may use, and its
//! limits and quotas. Everything is checked when the file loads, so a running service never
//! meets a tenant that names a server or component it does not have.

use crate::sandbox::{
    DEFAULT_CPU_SECONDS, DEFAULT_MEMORY_LIMIT, DEFAULT_STALL_SECONDS, DEFAULT_TIMEOUT_SECONDS, Limits,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The name tenants use for the component built into this binary.
pub const BUNDLED: &str = "bundled";

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Where the HTTP API listens (`serve --listen` wins).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The NATS server with JetStream that holds the queue and the job records.
    #[serde(default = "default_nats_url")]
    pub nats_url: String,
    /// Prefix of the stream, consumer, buckets and subjects: services with different prefixes
    /// share one NATS server without seeing each other's jobs.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Jobs this process runs at once (`serve --jobs-at-once` wins; 0: API only).
    #[serde(default = "default_jobs_at_once")]
    pub jobs_at_once: usize,
    /// A running job's worker renews its lease every third of this; a job whose lease runs out
    /// (its worker died) goes to another worker and runs again from the start.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// Attempts a job gets before it fails for good (each lost worker is one).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// After SIGTERM, how long running jobs may take to finish before they are handed back.
    #[serde(default = "default_drain_seconds")]
    pub drain_seconds: u64,
    /// Largest request body accepted (413 above).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default, rename = "component")]
    pub components: Vec<ComponentEntry>,
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerEntry>,
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<Tenant>,
}

fn default_listen() -> String {
    "127.0.0.1:8417".into()
}
fn default_nats_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_queue() -> String {
    "blocklet_migrate".into()
}
fn default_jobs_at_once() -> usize {
    4
}
fn default_lease_seconds() -> u64 {
    30
}
fn default_max_attempts() -> u32 {
    3
}
fn default_drain_seconds() -> u64 {
    60
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}

/// A component file the service may run, with the digest it must have.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ComponentEntry {
    pub path: PathBuf,
    pub sha256: String,
}

/// A PostgreSQL server jobs may use, by the name tenants know it by.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    pub name: String,
    /// `postgres://user:password@host:port/admin_db`: a secret.
    pub url: String,
}

impl std::fmt::Debug for ServerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerEntry").field("name", &self.name).finish_non_exhaustive()
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub name: String,
    /// sha256 of the tenant's API token, in hex (`blocklet-migrate service-token` makes both).
    pub token_sha256: String,
    /// Every data dir of this tenant's jobs lies under this directory.
    pub data_root: PathBuf,
    /// Names of `[[server]]`s this tenant may use.
    pub servers: Vec<String>,
    /// Components this tenant may run: `bundled` or a `[[component]]`'s sha256.
    #[serde(default = "bundled_only")]
    pub components: Vec<String>,
    /// The only PostgreSQL databases its jobs may use, as names or `*` patterns.
    pub databases: Option<Vec<String>>,
    /// Its jobs running at once, across every worker.
    #[serde(default = "one")]
    pub jobs_at_once: u32,
    /// Jobs it may submit per clock hour, across every API process.
    #[serde(default = "default_submits_per_hour")]
    pub submits_per_hour: u32,
    pub memory_limit_mib: Option<u64>,
    pub cpu_limit_seconds: Option<u64>,
    pub timeout_seconds: Option<u64>,
    pub stall_limit_seconds: Option<u64>,
}

fn bundled_only() -> Vec<String> {
    vec![BUNDLED.into()]
}
fn one() -> u32 {
    1
}
fn default_submits_per_hour() -> u32 {
    60
}

impl Tenant {
    /// The sandbox limits of this tenant's jobs.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: (self.memory_limit_mib.unwrap_or((DEFAULT_MEMORY_LIMIT >> 20) as u64) as usize) << 20,
            cpu_seconds: self.cpu_limit_seconds.unwrap_or(DEFAULT_CPU_SECONDS),
            timeout_seconds: self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            stall_seconds: self.stall_limit_seconds.unwrap_or(DEFAULT_STALL_SECONDS),
        }
    }
}

impl ServiceConfig {
    /// Read and check `path`; the error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<ServiceConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config: ServiceConfig =
            toml::from_str(&text).map_err(|e| format!("invalid {}: {e}", path.display()))?;
        config.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    fn check(&mut self) -> Result<(), String> {
        if !plain_name(&self.queue) {
            return Err(format!("queue = {:?}: use letters, digits, '_' and '-'", self.queue));
        }
        if self.lease_seconds < 3 {
            return Err("lease_seconds must be at least 3".into());
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        let mut servers = BTreeSet::new();
        for s in &self.servers {
            if !servers.insert(s.name.as_str()) {
                return Err(format!("[[server]] {:?} is listed twice", s.name));
            }
            crate::backend::postgres::PgServer::parse(&s.url).map_err(|e| format!("[[server]] {:?}: {e}", s.name))?;
        }
        let mut digests: BTreeSet<String> = [BUNDLED.to_string()].into();
        for c in &mut self.components {
            c.sha256 = c.sha256.to_ascii_lowercase();
            if !is_sha256(&c.sha256) {
                return Err(format!("[[component]] {}: sha256 must be 64 hex digits", c.path.display()));
            }
            digests.insert(c.sha256.clone());
        }
        let mut names = BTreeSet::new();
        let mut tokens = BTreeSet::new();
        for t in &mut self.tenants {
            if !plain_name(&t.name) {
                return Err(format!("[[tenant]] {:?}: a name is letters, digits, '_' and '-'", t.name));
            }
            if !names.insert(t.name.clone()) {
                return Err(format!("[[tenant]] {:?} is listed twice", t.name));
            }
            t.token_sha256 = t.token_sha256.to_ascii_lowercase();
            if !is_sha256(&t.token_sha256) {
                return Err(format!("[[tenant]] {:?}: token_sha256 must be 64 hex digits", t.name));
            }
            if !tokens.insert(t.token_sha256.clone()) {
                return Err(format!("[[tenant]] {:?} shares its token with another tenant", t.name));
            }
            t.data_root = std::fs::canonicalize(&t.data_root)
                .map_err(|e| format!("[[tenant]] {:?}: data_root {}: {e}", t.name, t.data_root.display()))?;
            for s in &t.servers {
                if !servers.contains(s.as_str()) {
                    return Err(format!("[[tenant]] {:?}: no [[server]] is named {s:?}", t.name));
                }
            }
            for c in &mut t.components {
                *c = c.to_ascii_lowercase();
                if !digests.contains(c.as_str()) {
                    return Err(format!(
                        "[[tenant]] {:?}: component {c:?} is neither bundled nor a [[component]]'s sha256",
                        t.name
                    ));
                }
            }
            if t.jobs_at_once == 0 {
                return Err(format!("[[tenant]] {:?}: jobs_at_once must be at least 1", t.name));
            }
        }
        Ok(())
    }

    /// The tenant whose token this is, comparing the token's digest with every tenant's.
    pub fn tenant_for_token(&self, token: &str) -> Option<&Tenant> {
        let digest = sha256_hex(token.as_bytes());
        let mut found = None;
        for t in &self.tenants {
            if constant_time_eq(t.token_sha256.as_bytes(), digest.as_bytes()) {
                found = Some(t);
            }
        }
        found
    }

    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.name == name)
    }

    pub fn server(&self, name: &str) -> Option<&ServerEntry> {
        self.servers.iter().find(|s| s.name == name)
    }
}

/// Why a requested data dir is refused.
#[derive(Debug, PartialEq)]
pub enum PathRefusal {
    /// It leaves the tenant's root (`..`, an absolute path elsewhere, a symlink out).
    Outside(String),
    /// It does not exist or cannot be read.
    Unusable(String),
}

impl std::fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathRefusal::Outside(m) | PathRefusal::Unusable(m) => f.write_str(m),
        }
    }
}

/// Resolve `requested` (relative to the tenant's root, or absolute) to a directory inside the
/// root, symlinks followed. `..` that climbs out of the root is refused before the file system
/// is asked, so a refusal says nothing about what exists outside.
pub fn resolve_data_dir(root: &Path, requested: &str) -> Result<PathBuf, PathRefusal> {
    if requested.is_empty() || requested.contains('\0') {
        return Err(PathRefusal::Unusable("data_dir is empty".into()));
    }
    let joined = root.join(requested);
    let mut lexical = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other.as_os_str()),
        }
    }
    if !lexical.starts_with(root) {
        return Err(PathRefusal::Outside(format!("data_dir {requested:?} is outside this tenant's directory")));
    }
    let resolved = std::fs::canonicalize(&lexical)
        .map_err(|e| PathRefusal::Unusable(format!("data_dir {requested:?} cannot be used: {}", e.kind())))?;
    if !resolved.starts_with(root) {
        return Err(PathRefusal::Outside(format!(
            "data_dir {requested:?} leads outside this tenant's directory (through a symbolic link)"
        )));
    }
    if !resolved.is_dir() {
        return Err(PathRefusal::Unusable(format!("data_dir {requested:?} is not a directory")));
    }
    Ok(resolved)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Letters, digits, `_` and `-`: safe in a NATS subject, a bucket key and a log line.
pub fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random API token and its digest, for a tenant's entry.
pub fn new_token() -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    let token = format!("bmt_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let digest = sha256_hex(token.as_bytes());
    Ok((token, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_must_stay_under_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tenant");
        std::fs::create_dir_all(root.join("a/.blocklet-server")).unwrap();
        std::fs::create_dir_all(tmp.path().join("other")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("other"), root.join("escape")).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        assert_eq!(resolve_data_dir(&root, "a").unwrap(), root.join("a"));
        assert_eq!(resolve_data_dir(&root, "a/../a/.blocklet-server").unwrap(), root.join("a/.blocklet-server"));
        let abs = root.join("a");
        assert!(resolve_data_dir(&root, abs.to_str().unwrap()).is_ok());
        assert!(matches!(resolve_data_dir(&root, "../other"), Err(PathRefusal::Outside(_))));
        assert!(matches!(resolve_data_dir(&root, "/etc"), Err(PathRefusal::Outside(_))));
        assert!(matches!(resolve_data_dir(&root, "escape"), Err(PathRefusal::Outside(_))));
        assert!(matches!(resolve_data_dir(&root, "missing"), Err(PathRefusal::Unusable(_))));
        // Climbing out and back in is fine; climbing out to a sibling that shares the prefix is not.
        assert!(resolve_data_dir(&root, "../tenant/a").is_ok());
        assert!(matches!(resolve_data_dir(&root, "../tenantx"), Err(PathRefusal::Outside(_))));
    }

    #[test]
    fn a_token_finds_its_tenant_by_digest_only() {
        let (token, digest) = new_token().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let text = format!(
            "[[server]]\nname = \"pg\"\nurl = \"postgres://u:pw@127.0.0.1:5432/postgres\"\n\n[[tenant]]\nname = \"acme\"\n\
             token_sha256 = \"{digest}\"\ndata_root = {:?}\nservers = [\"pg\"]\n",
            tmp.path()
        );
        let file = tmp.path().join("service.toml");
        std::fs::write(&file, text).unwrap();
        let config = ServiceConfig::load(&file).unwrap();
        assert_eq!(config.tenant_for_token(&token).unwrap().name, "acme");
        assert!(config.tenant_for_token("bmt_wrong").is_none());
        assert!(config.tenant_for_token(&digest).is_none(), "the digest itself is not a token");
        assert!(!format!("{:?}", config.servers).contains("pw"), "credentials never reach Debug output");
    }

    #[test]
    fn a_tenant_naming_an_unknown_server_or_component_is_refused_at_load() {
        let tmp = tempfile::tempdir().unwrap();
        let digest = "a".repeat(64);
        let file = tmp.path().join("service.toml");
        std::fs::write(
            &file,
            format!(
                "[[tenant]]\nname = \"acme\"\ntoken_sha256 = \"{digest}\"\ndata_root = {:?}\nservers = [\"nope\"]\n",
                tmp.path()
            ),
        )
        .unwrap();
        let e = ServiceConfig::load(&file).unwrap_err();
        assert!(e.contains("no [[server]] is named \"nope\""), "{e}");
        std::fs::write(
            &file,
            format!(
                "[[tenant]]\nname = \"acme\"\ntoken_sha256 = \"{digest}\"\ndata_root = {:?}\nservers = []\ncomponents = [\"{}\"]\n",
                tmp.path(),
                "b".repeat(64)
            ),
        )
        .unwrap();
        let e = ServiceConfig::load(&file).unwrap_err();
        assert!(e.contains("neither bundled nor a [[component]]"), "{e}");
    }
}
