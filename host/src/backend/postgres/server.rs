//! The PostgreSQL server named by `ABT_NODE_POSTGRES_URL`: parsing the URL (keeping its query
//! parameters such as `sslmode`), never printing its password, and the admin work done outside
//! the migration transactions (version check, creating target databases).
//!
//! Every session a job opens carries the job's own `application_name` (its session tag) and its
//! time bounds (`statement_timeout`, `lock_timeout`), so the server stops the job's work even if
//! the host is gone, and the host can end all of it at once ([`PgServer::end_sessions`]) when
//! the job fails, times out or is cancelled. A component cannot change either: `SET` and
//! `set_config` are not on its allowlist.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use std::str::FromStr;
use std::time::Duration;

/// The oldest PostgreSQL the target schema is known to work on.
pub const MIN_SERVER_VERSION: i32 = 120000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A PostgreSQL server to migrate to.
#[derive(Clone, Debug)]
pub struct PgServer {
    options: PgConnectOptions,
    /// The URL with any password replaced by `***`.
    pub display: String,
    /// `host:port`, for messages.
    pub address: String,
    pub user: String,
    /// The `application_name` of every session of this job, unique per job.
    session_tag: String,
}

/// A tag no other job shares: this process, and a count of the jobs it started.
fn new_session_tag() -> String {
    static JOBS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = JOBS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("blocklet-migrate {}-{started}-{n}", std::process::id())
}

/// `ABT_NODE_POSTGRES_URL` with any password replaced by `***`; unparsable input is withheld.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            // libpq-style `?password=…` is accepted too, so it is hidden the same way.
            if u.query_pairs().any(|(k, _)| k == "password") {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" { "***".to_string() } else { v.into_owned() };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string().replace("%2A%2A%2A", "***")
        }
        Err(_) => "<unparsable URL>".into(),
    }
}

impl PgServer {
    pub fn parse(url: &str) -> Result<PgServer, String> {
        let parsed = url::Url::parse(url).map_err(|e| {
            format!(
                "ABT_NODE_POSTGRES_URL is not a valid URL ({e}); expected postgres://user:password@host:5432/postgres"
            )
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "ABT_NODE_POSTGRES_URL must start with postgres:// or postgresql://, not {}://",
                parsed.scheme()
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(
                "ABT_NODE_POSTGRES_URL has no host; expected postgres://user:password@host:5432/postgres".into()
            );
        }
        let session_tag = new_session_tag();
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| format!("ABT_NODE_POSTGRES_URL cannot be used: {}", scrub(&e.to_string(), url)))?
            .disable_statement_logging()
            .application_name(&session_tag);
        Ok(PgServer {
            display: redact(url),
            address: format!("{}:{}", options.get_host(), options.get_port()),
            user: options.get_username().to_string(),
            options,
            session_tag,
        })
    }

    /// Bound every session of the job: no statement runs past the job's time limit, and no lock
    /// is waited for longer than its stall limit (0: no such bound).
    pub fn with_session_bounds(mut self, timeout: Duration, lock_wait: Duration) -> PgServer {
        let millis = |d: Duration| d.as_millis().min(i32::MAX as u128);
        let mut settings = Vec::new();
        if !timeout.is_zero() {
            settings.push(("statement_timeout", millis(timeout)));
        }
        if !lock_wait.is_zero() {
            settings.push(("lock_timeout", millis(lock_wait)));
        }
        self.options = self.options.options(settings);
        self
    }

    /// Give the job's sessions this `application_name` instead of one of their own (a caller
    /// that names each attempt of a job; at most 63 bytes reach the server).
    pub fn with_session_tag(mut self, tag: &str) -> PgServer {
        self.session_tag = tag.to_string();
        self.options = self.options.application_name(tag);
        self
    }

    /// End every other session of this job (cancelling what it runs, rolling back its
    /// transaction), from `conn`; how many there were.
    pub async fn end_sessions(&self, conn: &mut PgConnection) -> Result<u64, String> {
        self.end_sessions_tagged(conn, std::slice::from_ref(&self.session_tag)).await
    }

    /// End every session, but `conn`'s, whose `application_name` is one of `tags`.
    pub async fn end_sessions_tagged(&self, conn: &mut PgConnection, tags: &[String]) -> Result<u64, String> {
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = ANY($1) AND pid <> pg_backend_pid()",
        )
        .bind(tags)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| self.explain(e))?;
        Ok(ended.max(0) as u64)
    }

    /// The database the URL names (where `CREATE DATABASE` runs), if any.
    pub fn admin_database(&self) -> Option<&str> {
        self.options.get_database()
    }

    /// Options for connecting to one database of this server.
    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// Whether the server runs on this machine (a Unix socket or a loopback address), so that
    /// its backends share this machine's cores with the migration.
    pub fn is_local(&self) -> bool {
        if self.options.get_socket().is_some() {
            return true;
        }
        let host = self.options.get_host();
        host.starts_with('/')
            || host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Connect to the URL's own database, explaining the usual failures.
    pub async fn connect_admin(&self) -> Result<PgConnection, String> {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.options))
            .await
            .map_err(|_| {
                format!("cannot reach PostgreSQL at {}: no answer within {}s", self.address, CONNECT_TIMEOUT.as_secs())
            })?
            .map_err(|e| self.explain(e))?;
        Ok(conn)
    }

    fn explain(&self, e: sqlx::Error) -> String {
        match &e {
            sqlx::Error::Io(io) => format!("cannot reach PostgreSQL at {}: {io}", self.address),
            sqlx::Error::Tls(tls) => {
                format!("TLS with PostgreSQL at {} failed: {tls}", self.address)
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("28P01" | "28000") => {
                    format!("PostgreSQL at {} refused the login of user {}: {}", self.address, self.user, db.message())
                }
                Some("3D000") => format!(
                    "PostgreSQL at {}: {} (the database in ABT_NODE_POSTGRES_URL must exist)",
                    self.address,
                    db.message()
                ),
                _ => format!("PostgreSQL at {}: {}", self.address, db.message()),
            },
            other => format!("PostgreSQL at {}: {other}", self.address),
        }
    }

    /// Refuse servers older than [`MIN_SERVER_VERSION`].
    pub async fn check_version(&self, conn: &mut PgConnection) -> Result<(), String> {
        let num: String =
            sqlx::query_scalar("SHOW server_version_num").fetch_one(&mut *conn).await.map_err(|e| self.explain(e))?;
        let num: i32 = num.trim().parse().unwrap_or(0);
        if num < MIN_SERVER_VERSION {
            return Err(format!(
                "PostgreSQL at {} is version {}.{}; blocklet-migrate supports PostgreSQL 12 and newer",
                self.address,
                num / 10000,
                num % 10000
            ));
        }
        Ok(())
    }

    /// Create `name` if it does not exist (UTF8 from template0, the server's default locale).
    /// Returns whether it was created.
    pub async fn ensure_database(&self, conn: &mut PgConnection, name: &str) -> Result<bool, String> {
        check_identifier(name)?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.explain(e))?;
        if exists.is_some() {
            return Ok(false);
        }
        let sql = format!("CREATE DATABASE \"{name}\" WITH ENCODING = 'UTF8' TEMPLATE = template0");
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42501") => Err(format!(
                "user {} may not create database {name} on {}: grant it CREATEDB, or create the database first",
                self.user, self.address
            )),
            Err(e) => Err(format!("creating database {name}: {}", self.explain(e))),
        }
    }

    /// Names of the databases on the server (templates excluded).
    pub async fn list_databases(&self, conn: &mut PgConnection) -> Result<Vec<String>, String> {
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE NOT datistemplate ORDER BY datname")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.explain(e))
    }

    /// The size on disk of each of `names` (in that order, 0 for one that is missing): how much
    /// work migrating it back is. A database the user may not connect to also counts as 0, since
    /// `pg_database_size` would refuse it.
    pub async fn database_sizes(&self, conn: &mut PgConnection, names: &[String]) -> Result<Vec<u64>, String> {
        let sizes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT datname::text, CASE WHEN has_database_privilege(oid, 'CONNECT') \
             THEN pg_database_size(oid) ELSE 0 END FROM pg_database WHERE datname = ANY($1)",
        )
        .bind(names)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.explain(e))?;
        let size_of =
            |name: &String| sizes.iter().find(|(n, _)| n == name).map_or(0, |(_, size)| (*size).max(0) as u64);
        Ok(names.iter().map(size_of).collect())
    }

    /// Drop a database this run created (only ever called for those).
    pub async fn drop_database(&self, conn: &mut PgConnection, name: &str) -> Result<(), String> {
        check_identifier(name)?;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\"")))
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(|e| self.explain(e))
    }
}

/// Database names come from the component; accept only what PostgreSQL takes unquoted-safe.
fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("refusing database name {name:?}: only letters, digits and _ (at most 63) are allowed"));
    }
    Ok(())
}

/// Remove a URL (and its password) from a message.
fn scrub(message: &str, url: &str) -> String {
    let mut m = message.replace(url, &redact(url));
    if let Ok(u) = url::Url::parse(url) {
        let secrets = u
            .password()
            .map(str::to_string)
            .into_iter()
            .chain(u.query_pairs().filter(|(k, _)| k == "password").map(|(_, v)| v.into_owned()));
        for p in secrets.filter(|p| !p.is_empty()) {
            m = m.replace(&p, "***");
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_parameters_and_hides_passwords() {
        let s = PgServer::parse("postgres://u:s3cret@db.example:6543/postgres?sslmode=disable").unwrap();
        assert_eq!(s.address, "db.example:6543");
        assert!(!s.display.contains("s3cret"));
        assert!(s.display.contains("sslmode=disable"));
        assert!(PgServer::parse("not a url").unwrap_err().contains("ABT_NODE_POSTGRES_URL"));
        assert!(PgServer::parse("mysql://x@y/z").is_err());
        assert_eq!(redact("garbage"), "<unparsable URL>");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=p4ss"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert!(check_identifier("blocklet_db_zNK1").is_ok());
        assert!(check_identifier("x\"; DROP").is_err());
    }

    #[test]
    fn a_server_is_local_on_a_socket_or_a_loopback_address() {
        let local = |url: &str| PgServer::parse(url).unwrap().is_local();
        assert!(local("postgres://u@127.0.0.1:5432/postgres"));
        assert!(local("postgres://u@127.0.0.2/postgres"));
        assert!(local("postgres://u@localhost/postgres"));
        assert!(local("postgres://u@[::1]:5432/postgres"));
        assert!(local("postgres://u@localhost/postgres?host=/var/run/postgresql"));
        assert!(!local("postgres://u@db.example:5432/postgres"));
        assert!(!local("postgres://u@10.0.0.5/postgres"));
        assert!(!local("postgres://u@[2001:db8::1]/postgres"));
    }
}
