//! `cargo demo`: the tool's main job on the demo fixture, with nothing set up by hand.
//!
//! A copy of `tests/fixtures/blocklet-1.17.12-demo` is migrated to PostgreSQL by a
//! `blocklet-migrate` binary, then what arrived is counted with `psql` and checked against the
//! run's report. The target is `ABT_NODE_POSTGRES_URL` if set, else a server listening on
//! 127.0.0.1 (port 5432 unless told otherwise), else a throwaway cluster started from the
//! machine's PostgreSQL binaries and stopped afterwards. The npm-install test runs the same
//! [`run`] through the installed command, so the demo and that test cannot drift apart.

pub mod arrived;

use blocklet_migrate_test_support::{ClusterOptions, PgCluster, pg_bin_dir, try_copy_tree};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the demo's databases go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A server the user runs: its databases from an earlier demo are replaced (`--force`).
    Server(String),
    /// A cluster of our own, started for this run and stopped after it.
    Throwaway,
}

impl Target {
    /// `ABT_NODE_POSTGRES_URL` if set; else a server on 127.0.0.1:`port` if one listens; else throwaway.
    pub fn choose(url_from_env: Option<String>, port: u16) -> Target {
        if let Some(url) = url_from_env.filter(|u| !u.trim().is_empty()) {
            return Target::Server(url);
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            Target::Server(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        } else {
            Target::Throwaway
        }
    }
}

/// The repository's demo fixture: a directory holding `.blocklet-server/`.
pub fn fixture_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/blocklet-1.17.12-demo");
    dir.canonicalize().unwrap_or(dir)
}

/// Migrate a copy of `fixture` with `binary` into `target`; returns what arrived.
pub fn run(binary: &Path, fixture: &Path, target: &Target) -> Result<Vec<arrived::Database>, String> {
    let work = tempfile::TempDir::with_prefix("blocklet-migrate-demo-")
        .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    try_copy_tree(fixture, work.path()).map_err(|e| format!("cannot copy the demo fixture: {e:#}"))?;
    let data_dir = work.path().join(".blocklet-server");
    let cluster;
    let (url, psql) = match target {
        Target::Server(url) => (url.clone(), client_psql()?),
        Target::Throwaway => {
            println!("No PostgreSQL given or listening: starting a throwaway cluster");
            let no_cluster = |e: anyhow::Error| format!("{e:#}; or point ABT_NODE_POSTGRES_URL at a running server");
            cluster = PgCluster::try_start(&ClusterOptions::default()).map_err(no_cluster)?;
            (cluster.url(), pg_bin_dir().map_err(no_cluster)?.join("psql"))
        }
    };
    let report = work.path().join("report.json");
    println!("Migrating a copy of {} into {url}", fixture.display());
    let mut migrate = Command::new(binary);
    migrate.args(["--dialect", "postgres", "--data-dir"]).arg(&data_dir).arg("--report").arg(&report);
    if matches!(target, Target::Server(_)) {
        // The demo's databases (server_db, …) may exist from an earlier run.
        migrate.arg("--force");
    }
    let status = migrate
        .env("ABT_NODE_POSTGRES_URL", &url)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !status.success() {
        return Err(format!("{} --dialect postgres failed ({status})", binary.display()));
    }
    let databases = arrived::count(&psql, &url, &report)?;
    println!("\nWhat arrived in {url} (counted with psql, matching the run's report):");
    print!("{}", arrived::render(&databases));
    if matches!(target, Target::Throwaway) {
        println!("Stopping the throwaway cluster");
    }
    Ok(databases)
}

/// `psql` on `PATH`, else beside the server binaries.
fn client_psql() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("psql"))
        .find(|p| p.is_file());
    match on_path {
        Some(psql) => Ok(psql),
        None => pg_bin_dir().map(|bin| bin.join("psql")).map_err(|_| {
            "psql not found, needed to show what arrived: install it (Debian/Ubuntu: apt-get install postgresql-client)"
                .to_string()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_url_wins_over_everything() {
        let target = Target::choose(Some("postgres://u@db:5433/postgres".into()), 1);
        assert_eq!(target, Target::Server("postgres://u@db:5433/postgres".into()));
    }

    #[test]
    fn a_listening_port_is_used_and_a_silent_one_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(
            Target::choose(Some(" ".into()), port),
            Target::Server(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        );
        drop(listener);
        assert_eq!(Target::choose(None, port), Target::Throwaway);
    }

    #[test]
    fn the_fixture_is_where_the_demo_looks() {
        assert!(fixture_dir().join(".blocklet-server/config.yml").is_file());
    }
}
