//! The host's own account of every row of a database, kept apart from anything the component
//! says about it.
//!
//! Before the component runs, the host counts each source table in the job's snapshot. While it
//! runs, the host's cursors count the rows they deliver and its bulk loads the rows the database
//! accepted. Before committing, the host counts every target table inside the target's
//! transaction. A database commits only if each source row is accounted for: in the target table
//! the component's feeds name for it, or reported as rejected (allowed only with
//! `--skip-rejects`). The per-table lines and the report's counts come from here; the
//! component's own counts and checksums are an extra check, never the decision.

use crate::backend::{Database, Source};
use crate::wit::blocklet::migrate::database::Dialect;
use crate::wit::exports::blocklet::migrate::accounting::{Destination as WitDestination, TableFeed};
use crate::wit::{DatabaseReport, DbError, TableReport};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What happens to one source table's rows, as the component declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// One target row per source row, in this table.
    CopiedTo(String),
    /// Not copied, for this reason (the meta table, written afresh).
    NotCopied(String),
}

impl Destination {
    /// The target table, when rows are copied.
    pub fn copied_to(&self) -> Option<&str> {
        match self {
            Destination::CopiedTo(table) => Some(table),
            Destination::NotCopied(_) => None,
        }
    }
}

/// One source table and where its rows go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feed {
    pub source_table: String,
    pub destination: Destination,
}

/// The component's feeds in the ledger's terms.
pub fn feeds_from_component(feeds: Vec<TableFeed>) -> Vec<Feed> {
    feeds
        .into_iter()
        .map(|f| Feed {
            source_table: f.source_table,
            destination: match f.destination {
                WitDestination::CopiedTo(t) => Destination::CopiedTo(t),
                WitDestination::NotCopied(why) => Destination::NotCopied(why),
            },
        })
        .collect()
}

/// The tables of `source` that hold rows to migrate. SQLite's own tables (`sqlite_sequence`,
/// `sqlite_stat1`: SQLite reserves the `sqlite_` prefix) hold the engine's bookkeeping.
pub async fn source_tables(source: &Database) -> Result<Vec<String>, DbError> {
    let engine_table = |t: &str| source.dialect() == Dialect::Sqlite && t.starts_with("sqlite_");
    Ok(source.list_tables().await?.into_iter().filter(|t| !engine_table(t)).collect())
}

/// The host's own count of every table of `source` ([`source_tables`]), in the job's snapshot.
pub async fn count_source(source: &Database) -> Result<BTreeMap<String, u64>, DbError> {
    let mut counts = BTreeMap::new();
    for table in source_tables(source).await? {
        let rows = source.count_rows(&table).await?;
        counts.insert(table, rows);
    }
    Ok(counts)
}

/// Where each source table goes when a component does not declare it (components built for WIT
/// 1.1 and 1.2): into its namesake, except the meta table, which those components write afresh.
pub fn default_feeds(source_tables: &[String], meta_table: &str) -> Vec<Feed> {
    source_tables
        .iter()
        .map(|t| Feed {
            source_table: t.clone(),
            destination: if t == meta_table {
                Destination::NotCopied(format!("{meta_table} is written afresh by the component"))
            } else {
                Destination::CopiedTo(t.clone())
            },
        })
        .collect()
}

/// One database's account.
#[derive(Debug, Default)]
pub struct Account {
    database: String,
    feeds: Vec<Feed>,
    source_rows: BTreeMap<String, u64>,
    delivered: BTreeMap<String, u64>,
    accepted: BTreeMap<String, u64>,
    rejected: BTreeMap<String, u64>,
    target_rows: BTreeMap<String, u64>,
    /// Why a target table could not be counted (it does not exist, the transaction is aborted).
    uncounted: BTreeMap<String, String>,
}

/// One table's line, from the host's counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableLine {
    pub source_table: String,
    /// None when the component does not copy it (see [`Destination::NotCopied`]).
    pub target_table: Option<String>,
    pub source_rows: u64,
    /// Rows in the target table just before commit (None when not copied).
    pub target_rows: Option<u64>,
    pub rejected_rows: u64,
}

impl Account {
    /// Start the account of `database` from the host's own count of each source table and the
    /// component's feeds, refusing feeds that leave a source table out, name one twice, name a
    /// table the source does not have, or send two source tables into one target table.
    pub fn new(database: &str, source_rows: BTreeMap<String, u64>, feeds: Vec<Feed>) -> Result<Account, String> {
        let mut seen = BTreeSet::new();
        let mut targets = BTreeSet::new();
        for feed in &feeds {
            if !source_rows.contains_key(&feed.source_table) {
                return Err(format!(
                    "{database}: the component's feeds name a source table {} that the source does not have",
                    feed.source_table
                ));
            }
            if !seen.insert(feed.source_table.as_str()) {
                return Err(format!("{database}: the component's feeds name source table {} twice", feed.source_table));
            }
            if let Some(target) = feed.destination.copied_to()
                && !targets.insert(target)
            {
                return Err(format!(
                    "{database}: the component's feeds send two source tables into target table {target}"
                ));
            }
        }
        if let Some(missing) = source_rows.keys().find(|t| !seen.contains(t.as_str())) {
            return Err(format!(
                "{database}: the component's feeds do not say where the rows of source table {missing} go"
            ));
        }
        Ok(Account { database: database.to_string(), feeds, source_rows, ..Default::default() })
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The target tables to count before commit.
    pub fn target_tables(&self) -> impl Iterator<Item = &str> {
        self.feeds.iter().filter_map(|f| f.destination.copied_to())
    }

    /// Rows a host cursor delivered from a source table.
    pub fn delivered(&mut self, source_table: &str, rows: u64) {
        *self.delivered.entry(source_table.to_string()).or_default() += rows;
    }

    /// Rows a host bulk load into a target table was told by the database it accepted.
    pub fn accepted(&mut self, target_table: &str, rows: u64) {
        *self.accepted.entry(target_table.to_string()).or_default() += rows;
    }

    /// Rows the component reported as rejected, under the table name it gave.
    pub fn rejected(&mut self, table: &str, rows: u64) {
        *self.rejected.entry(table.to_string()).or_default() += rows;
    }

    /// The host's count of a target table, taken inside the transaction just before commit.
    pub fn counted_target(&mut self, target_table: &str, rows: u64) {
        self.target_rows.insert(target_table.to_string(), rows);
    }

    /// Count every target table the feeds name, inside the target's transaction; a table that
    /// cannot be counted is a problem [`Account::settle`] names, with the database's reason.
    pub async fn count_targets(&mut self, target: &Database) {
        let tables: Vec<String> = self.target_tables().map(str::to_string).collect();
        // A count of a missing table would abort a PostgreSQL transaction, and every count after it.
        let existing: BTreeSet<String> = match target.list_tables().await {
            Ok(existing) => existing.into_iter().collect(),
            Err(e) => {
                for table in tables {
                    self.uncounted.insert(table, e.message.clone());
                }
                return;
            }
        };
        for table in tables {
            if !existing.contains(&table) {
                self.uncounted.insert(table, "the target has no such table".into());
                continue;
            }
            match target.count_rows(&table).await {
                Ok(rows) => self.counted_target(&table, rows),
                Err(e) => {
                    self.uncounted.insert(table, e.message);
                }
            }
        }
    }

    /// The component's report with the host's counts in place of the component's: the tables
    /// in the component's order (those it did not report after them), each with the host's
    /// source, target and rejected rows and the component's checksum.
    pub fn accounted_report(&self, lines: &[TableLine], claimed: &DatabaseReport) -> DatabaseReport {
        let checksums: HashMap<&str, &str> =
            claimed.tables.iter().map(|t| (t.table.as_str(), t.checksum.as_str())).collect();
        let position: HashMap<&str, usize> =
            claimed.tables.iter().enumerate().map(|(i, t)| (t.table.as_str(), i)).collect();
        let mut copied: Vec<&TableLine> = lines.iter().filter(|l| l.target_table.is_some()).collect();
        copied.sort_by_key(|l| position.get(l.source_table.as_str()).copied().unwrap_or(usize::MAX));
        DatabaseReport {
            tables: copied
                .into_iter()
                .map(|l| TableReport {
                    table: l.source_table.clone(),
                    source_rows: l.source_rows,
                    target_rows: l.target_rows.unwrap_or(0),
                    rejected_rows: l.rejected_rows,
                    checksum: checksums.get(l.source_table.as_str()).unwrap_or(&"").to_string(),
                })
                .collect(),
            rejected_rows: self.rejected_total(),
        }
    }

    /// Rows the host's bulk loads put into `target_table`.
    pub fn accepted_into(&self, target_table: &str) -> u64 {
        self.accepted.get(target_table).copied().unwrap_or(0)
    }

    /// Rows the host's cursors read from `source_table`.
    pub fn delivered_from(&self, source_table: &str) -> u64 {
        self.delivered.get(source_table).copied().unwrap_or(0)
    }

    /// Every rejected row the component reported for this database.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// The per-table lines, and whether every source row is accounted for: each copied table's
    /// target holds exactly its source rows less those reported rejected, and rejected rows are
    /// allowed only with `skip_rejects`. Every discrepancy is listed, one per table.
    pub fn settle(&self, skip_rejects: bool) -> Result<Vec<TableLine>, Vec<String>> {
        let mut lines = Vec::new();
        let mut problems = Vec::new();
        for feed in &self.feeds {
            let source_rows = self.source_rows[&feed.source_table];
            let rejected_rows = self.rejected.get(&feed.source_table).copied().unwrap_or(0);
            let Destination::CopiedTo(target) = &feed.destination else {
                lines.push(TableLine {
                    source_table: feed.source_table.clone(),
                    target_table: None,
                    source_rows,
                    target_rows: None,
                    rejected_rows,
                });
                continue;
            };
            let db = &self.database;
            let Some(&target_rows) = self.target_rows.get(target) else {
                let why = self.uncounted.get(target).map_or(String::new(), |e| format!(": {e}"));
                problems.push(format!("{db}.{target}: the host could not count the target table{why}"));
                continue;
            };
            let expected = source_rows.saturating_sub(rejected_rows);
            if rejected_rows > 0 && !skip_rejects {
                problems.push(format!(
                    "{db}.{target}: {rejected_rows} rows were reported rejected, which only --skip-rejects allows"
                ));
            }
            if rejected_rows > source_rows {
                problems.push(format!(
                    "{db}.{}: {rejected_rows} rows reported rejected, but the source has only {source_rows}",
                    feed.source_table
                ));
            } else if target_rows != expected {
                let missing = expected.saturating_sub(target_rows);
                let extra = target_rows.saturating_sub(expected);
                let seen = format!(
                    "(the host's cursors read {} rows of it; its bulk loads put {} rows into {target})",
                    self.delivered_from(&feed.source_table),
                    self.accepted_into(target)
                );
                problems.push(if missing > 0 {
                    format!(
                        "{db}.{target}: {source_rows} rows in source table {}, {rejected_rows} reported rejected, \
                         but {target_rows} in the target: {missing} rows are not accounted for {seen}",
                        feed.source_table
                    )
                } else {
                    format!(
                        "{db}.{target}: {source_rows} rows in source table {}, {rejected_rows} reported rejected, \
                         but {target_rows} in the target: {extra} rows the source does not have {seen}",
                        feed.source_table
                    )
                });
            }
            lines.push(TableLine {
                source_table: feed.source_table.clone(),
                target_table: Some(target.clone()),
                source_rows,
                target_rows: Some(target_rows),
                rejected_rows,
            });
        }
        if problems.is_empty() { Ok(lines) } else { Err(problems) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn names(tables: &[&str]) -> Vec<String> {
        tables.iter().map(|t| t.to_string()).collect()
    }

    fn account() -> Account {
        let source = counts(&[("users", 3), ("blocklets", 2), ("SequelizeMeta", 40)]);
        let feeds = default_feeds(&names(&["users", "blocklets", "SequelizeMeta"]), "SequelizeMeta");
        Account::new("server_db", source, feeds).unwrap()
    }

    #[test]
    fn every_row_in_its_target_settles() {
        let mut a = account();
        a.counted_target("users", 3);
        a.counted_target("blocklets", 2);
        let lines = a.settle(false).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].target_rows, Some(3));
        assert_eq!(lines[2].target_table, None, "the meta table is not copied");
    }

    #[test]
    fn missing_rows_are_named_whatever_the_component_claims() {
        let mut a = account();
        a.counted_target("users", 3);
        a.counted_target("blocklets", 0);
        let problems = a.settle(false).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("server_db.blocklets") && problems[0].contains("2 rows are not accounted for"));
        assert!(problems[0].contains("its bulk loads put 0 rows into blocklets"), "{problems:?}");
    }

    #[test]
    fn extra_rows_are_named() {
        let mut a = account();
        a.counted_target("users", 4);
        a.counted_target("blocklets", 2);
        let problems = a.settle(false).unwrap_err();
        assert!(problems[0].contains("1 rows the source does not have"), "{problems:?}");
    }

    #[test]
    fn rejected_rows_settle_only_with_skip_rejects() {
        let mut a = account();
        a.rejected("users", 1);
        a.counted_target("users", 2);
        a.counted_target("blocklets", 2);
        assert!(a.settle(false).unwrap_err()[0].contains("only --skip-rejects allows"));
        let lines = a.settle(true).unwrap();
        assert_eq!(lines[0].rejected_rows, 1);
    }

    #[test]
    fn rejects_cannot_cover_more_rows_than_the_source_has() {
        let mut a = account();
        for _ in 0..5 {
            a.rejected("users", 1);
        }
        a.counted_target("users", 0);
        a.counted_target("blocklets", 2);
        assert!(a.settle(true).unwrap_err()[0].contains("the source has only 3"));
    }

    #[test]
    fn an_uncounted_target_does_not_settle() {
        let mut a = account();
        a.counted_target("users", 3);
        assert!(a.settle(false).unwrap_err()[0].contains("could not count"));
    }

    #[test]
    fn feeds_must_cover_each_source_table_once() {
        let source = counts(&[("users", 1), ("blocklets", 1)]);
        let one = |s: &str, t: &str| Feed { source_table: s.into(), destination: Destination::CopiedTo(t.into()) };
        let err = Account::new("db", source.clone(), vec![one("users", "users")]).unwrap_err();
        assert!(err.contains("do not say where the rows of source table blocklets go"), "{err}");
        let err = Account::new("db", source.clone(), vec![one("users", "users"), one("users", "u2")]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let err = Account::new("db", source.clone(), vec![one("users", "x"), one("blocklets", "x")]).unwrap_err();
        assert!(err.contains("two source tables into target table x"), "{err}");
        let err = Account::new("db", source, vec![one("users", "users"), one("blocklets", "b"), one("ghost", "g")])
            .unwrap_err();
        assert!(err.contains("ghost"), "{err}");
    }

    #[test]
    fn the_copied_targets_are_counted() {
        assert_eq!(account().target_tables().collect::<Vec<_>>(), ["users", "blocklets"]);
    }

    #[test]
    fn deliveries_and_acceptances_add_up() {
        let mut a = account();
        a.delivered("users", 2);
        a.delivered("users", 1);
        a.accepted("users", 3);
        assert_eq!((a.delivered_from("users"), a.accepted_into("users"), a.accepted_into("x")), (3, 3, 0));
    }
}
