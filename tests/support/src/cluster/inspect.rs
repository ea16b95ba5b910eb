//! What a test asks a cluster: its databases, tables, row counts, schema dumps, sequences and
//! every row, plus the few changes a test makes to it (`pg_hba.conf`, psql as another user).
//! These panic with psql's output: a test that cannot read its target has failed.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use anyhow::Result;

use super::PgCluster;
use crate::sql::quote_ident;

impl PgCluster {
    /// Non-template databases except `postgres`, sorted.
    #[track_caller]
    pub fn databases(&self) -> Vec<String> {
        self.try_databases().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `count(*)` of every base table in schema `public` of `db`, in one psql call
    /// (`query_to_xml` runs the counts server-side).
    pub fn try_table_counts(&self, db: &str) -> Result<BTreeMap<String, i64>> {
        let sql = "SELECT table_name, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM public.%I', \
                   table_name), false, true, '')))[1]::text FROM information_schema.tables \
                   WHERE table_schema = 'public' AND table_type = 'BASE TABLE'";
        self.try_psql(db, sql)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (t, n) = l.rsplit_once('|').ok_or_else(|| anyhow::anyhow!("{db}: unexpected row {l:?}"))?;
                let n = n.trim().parse().map_err(|_| anyhow::anyhow!("{db}: unexpected count in {l:?}"))?;
                Ok((t.to_string(), n))
            })
            .collect()
    }

    /// [`PgCluster::try_table_counts`], panicking on error.
    #[track_caller]
    pub fn table_counts(&self, db: &str) -> BTreeMap<String, i64> {
        self.try_table_counts(db).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs a query that returns one integer.
    #[track_caller]
    pub fn psql_i64(&self, db: &str, sql: &str) -> i64 {
        let s = self.psql(db, sql);
        s.trim().parse().unwrap_or_else(|_| panic!("expected an integer from {sql:?} on {db}, got {s:?}"))
    }

    /// Base tables in schema `public` of `db`, sorted.
    #[track_caller]
    pub fn tables(&self, db: &str) -> Vec<String> {
        let s = self.psql(
            db,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        );
        let mut v: Vec<String> = s.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
        v.sort();
        v
    }

    /// `count(*)` of a table in `public`.
    #[track_caller]
    pub fn count(&self, db: &str, table: &str) -> i64 {
        self.psql_i64(db, &format!("SELECT count(*) FROM public.{}", quote_ident(table)))
    }

    /// `(database, table, rows)` for every base table of every non-template database.
    pub fn row_counts(&self) -> Vec<(String, String, i64)> {
        let mut v = Vec::new();
        for db in self.databases() {
            for t in self.tables(&db) {
                let n = self.count(&db, &t);
                v.push((db.clone(), t, n));
            }
        }
        v
    }

    /// Asserts that no table in any database of the cluster has rows, `SequelizeMeta` included.
    /// This is how a failed run has to leave the target.
    #[track_caller]
    pub fn assert_no_rows_anywhere(&self) {
        let non_empty: Vec<String> = self
            .row_counts()
            .into_iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(db, t, n)| format!("  {db}.{t}: {n} rows"))
            .collect();
        assert!(non_empty.is_empty(), "a failed migration left data behind:\n{}", non_empty.join("\n"));
    }

    /// `pg_dump --schema-only -O -x` of `db`, made the same way as the reference `pg-*.sql` files.
    pub fn pg_dump_schema(&self, db: &str) -> String {
        let port = self.port.to_string();
        let out = self
            .client_cmd("pg_dump")
            .args(["--schema-only", "-O", "-x", "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db])
            .output()
            .expect("run pg_dump");
        assert!(out.status.success(), "pg_dump of {db} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("pg_dump output is UTF-8")
    }

    /// For every column whose default is `nextval(...)` in every database, asserts that the next
    /// sequence value is past the column's current maximum. Otherwise the next insert by the
    /// server would collide with a migrated id. Calls `nextval`, so it consumes one value per sequence.
    #[track_caller]
    pub fn assert_sequences_past_max_ids(&self) {
        let mut problems = Vec::new();
        let mut checked = 0;
        for db in self.databases() {
            let rows = self.psql(
                &db,
                "SELECT table_name, column_name, column_default FROM information_schema.columns \
                 WHERE table_schema = 'public' AND column_default LIKE 'nextval(%' ORDER BY 1, 2",
            );
            for line in rows.lines().filter(|l| !l.is_empty()) {
                let parts: Vec<&str> = line.splitn(3, '|').collect();
                assert_eq!(parts.len(), 3, "unexpected row {line:?}");
                let (table, column, default) = (parts[0], parts[1], parts[2]);
                let seq = default
                    .strip_prefix("nextval('")
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or_else(|| panic!("cannot parse sequence from default {default:?}"));
                let res = self.psql(
                    &db,
                    &format!(
                        "SELECT coalesce(max({c})::bigint, 0), nextval('{seq}') FROM public.{t}",
                        c = quote_ident(column),
                        t = quote_ident(table)
                    ),
                );
                let nums: Vec<i64> = res.split('|').map(|s| s.trim().parse().expect("integer")).collect();
                checked += 1;
                if nums[1] <= nums[0] {
                    problems.push(format!(
                        "  {db}: {table}.{column} max = {}, but nextval('{seq}') = {}",
                        nums[0], nums[1]
                    ));
                }
            }
        }
        assert!(checked > 0, "no serial columns found at all: was anything migrated?");
        assert!(problems.is_empty(), "sequences behind their max ids:\n{}", problems.join("\n"));
    }

    /// A psql command on `db` with the session time zone fixed to UTC.
    fn psql_utc_cmd(&self, db: &str) -> Command {
        let port = self.port.to_string();
        let mut cmd = self.client_cmd("psql");
        cmd.env("PGTZ", "UTC")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port])
            .args(["-U", "postgres", "-d", db]);
        cmd
    }

    /// Every table of `db` (schema `public`), as `table → rows`: each row one line of
    /// `COPY (SELECT * FROM t) TO STDOUT` text (tab-separated, newlines escaped, `\N` for NULL,
    /// timestamps in UTC), sorted. Nothing is left out: `SequelizeMeta` and empty tables included.
    #[track_caller]
    pub fn table_dump(&self, db: &str) -> BTreeMap<String, Vec<String>> {
        let mut dump = BTreeMap::new();
        for table in self.tables(db) {
            let sql = format!("COPY (SELECT * FROM public.{}) TO STDOUT", quote_ident(&table));
            let out = self.psql_utc_cmd(db).args(["-c", &sql]).output().expect("run psql");
            assert!(out.status.success(), "COPY {db}.{table} failed: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8(out.stdout).expect("COPY output is UTF-8");
            let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
            rows.sort();
            dump.insert(table, rows);
        }
        dump
    }

    /// Every sequence of `db` (schema `public`) as `name → (last_value, is_called)`.
    #[track_caller]
    pub fn sequences(&self, db: &str) -> BTreeMap<String, (i64, bool)> {
        let names = self.psql(db, "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1");
        names
            .lines()
            .filter(|l| !l.is_empty())
            .map(|seq| {
                let row = self.psql(db, &format!("SELECT last_value, is_called FROM public.{}", quote_ident(seq)));
                let (last, called) = row.split_once('|').unwrap_or_else(|| panic!("unexpected row {row:?}"));
                (seq.to_string(), (last.trim().parse().expect("last_value"), called.trim() == "t"))
            })
            .collect()
    }

    /// [`PgCluster::table_counts`] of every database [`PgCluster::databases`] lists, keyed by `(database, table)`.
    #[track_caller]
    pub fn all_table_counts(&self) -> BTreeMap<(String, String), i64> {
        let mut all = BTreeMap::new();
        for db in self.databases() {
            for (t, n) in self.table_counts(&db) {
                all.insert((db.clone(), t), n);
            }
        }
        all
    }

    /// Like [`PgCluster::assert_no_rows_anywhere`], with one psql call per database.
    #[track_caller]
    pub fn assert_all_tables_empty(&self, what: &str) {
        let non_empty: Vec<String> = self
            .all_table_counts()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|((db, t), n)| format!("  {db}.{t}: {n} rows"))
            .collect();
        assert!(non_empty.is_empty(), "{what}: data left behind:\n{}", non_empty.join("\n"));
    }

    /// Runs `sql` in `db` as `user` (with `password`, if any, through `PGPASSWORD`); never prompts.
    pub fn try_psql_as(&self, user: &str, password: Option<&str>, db: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let mut cmd = self.client_cmd("psql");
        cmd.args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port])
            .args(["-U", user, "-d", db, "-c", sql]);
        if let Some(pw) = password {
            cmd.env("PGPASSWORD", pw);
        }
        let out = cmd.output().expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Replaces the cluster's `pg_hba.conf` with `rules` and reloads the configuration.
    /// The reload is asynchronous: callers should check the effect (see [`PgCluster::try_psql_as`]).
    #[track_caller]
    pub fn set_hba(&self, rules: &str) {
        let hba = self.data.join("pg_hba.conf");
        // Written in place, so the file keeps its owner (`postgres` when the tests run as root).
        fs::write(&hba, rules).unwrap_or_else(|e| panic!("write {}: {e}", hba.display()));
        let out =
            self.server_cmd("pg_ctl").arg("reload").arg("-D").arg(&self.data).output().expect("run pg_ctl reload");
        assert!(out.status.success(), "pg_ctl reload failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The value `nextval` would return for a sequence state `(last_value, is_called)`.
pub fn next_sequence_value((last, called): (i64, bool)) -> i64 {
    if called { last + 1 } else { last }
}

/// What a target cluster holds: every database (`postgres` included) with every table's row count
/// (`(database, table) → rows`; a database without tables appears as `(database, "")` → 0).
#[track_caller]
pub fn target_state(pg: &PgCluster) -> BTreeMap<(String, String), i64> {
    let mut state = BTreeMap::new();
    let mut dbs = pg.databases();
    dbs.push("postgres".into());
    for db in dbs {
        state.insert((db.clone(), String::new()), 0);
        for (t, n) in pg.table_counts(&db) {
            state.insert((db.clone(), t), n);
        }
    }
    state
}
