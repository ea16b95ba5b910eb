//! The server facts the host acts on but does not know itself (WIT `conventions`, 1.3): the
//! markers of a data dir, the lock file, the index database, the meta table and the names of
//! the kinds of database. The component answers once; the host checks every answer, since a
//! component is untrusted and these name files the host writes and removes.
//!
//! A component built for 1.1 or 1.2 does not export the interface. It was built for Blocklet
//! Server 1.17, so the host uses that server's values, kept here and nowhere else
//! ([`Conventions::blocklet_server_1_17`]).

use crate::text::printable;
use crate::wit::DatabaseKind;
use crate::wit::exports::blocklet::migrate::conventions::ServerConventions;

/// A data dir is a directory named `directory` holding `config_file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDirMarker {
    pub directory: String,
    pub config_file: String,
}

/// The conventions of the server a component migrates, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conventions {
    /// Preferred first.
    pub data_dir_markers: Vec<DataDirMarker>,
    /// Relative to the data dir, without `..`.
    pub lock_file: String,
    /// The PostgreSQL database a migration back to SQLite plans from.
    pub index_database: String,
    /// The one table a PostgreSQL target accepts literal inserts into.
    pub meta_table: String,
    kind_labels: Vec<(DatabaseKind, String)>,
}

/// Longest kind label kept (they are printed on every database's line).
const MAX_LABEL_BYTES: usize = 64;

impl Conventions {
    /// What components built for WIT 1.1 and 1.2 assume: Blocklet Server 1.17's conventions.
    pub fn blocklet_server_1_17() -> Conventions {
        let marker = |directory: &str, config_file: &str| DataDirMarker {
            directory: directory.into(),
            config_file: config_file.into(),
        };
        Conventions {
            data_dir_markers: vec![marker(".blocklet-server", "config.yml"), marker(".abtnode", "abtnode.yml")],
            lock_file: "core/sqlite-to-postgres.lock".into(),
            index_database: "server_db".into(),
            meta_table: "SequelizeMeta".into(),
            kind_labels: vec![
                (DatabaseKind::Server, "Server".into()),
                (DatabaseKind::Service, "Service".into()),
                (DatabaseKind::Blocklet, "Blocklet".into()),
                (DatabaseKind::CertificateManager, "certificate-manager".into()),
            ],
        }
    }

    /// Check what a component answered; the error names the first answer refused.
    pub fn from_component(answer: ServerConventions) -> Result<Conventions, String> {
        let refuse = |what: &str, value: &str, why: &str| {
            Err(format!("the migration component's conventions name {what} {}: {why}", printable(value)))
        };
        if answer.data_dir_markers.is_empty() {
            return Err("the migration component's conventions name no data dir marker".into());
        }
        let mut data_dir_markers = Vec::new();
        for m in answer.data_dir_markers {
            for (what, name) in [("the data dir", &m.directory), ("the config file", &m.config_file)] {
                if let Err(why) = check_segment(name) {
                    return refuse(what, name, why);
                }
            }
            data_dir_markers.push(DataDirMarker { directory: m.directory, config_file: m.config_file });
        }
        if answer.lock_file.is_empty() || answer.lock_file.starts_with('/') {
            return refuse("the lock file", &answer.lock_file, "not a path relative to the data dir");
        }
        if let Some(why) = answer.lock_file.split('/').find_map(|s| check_segment(s).err()) {
            return refuse("the lock file", &answer.lock_file, why);
        }
        let is_identifier =
            |s: &str| !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_identifier(&answer.index_database) {
            return refuse(
                "the index database",
                &answer.index_database,
                "only letters, digits and _ (at most 63) are allowed",
            );
        }
        if answer.meta_table.is_empty()
            || answer.meta_table.len() > 63
            || answer.meta_table.chars().any(char::is_control)
        {
            return refuse("the meta table", &answer.meta_table, "not a PostgreSQL table name (1 to 63 bytes)");
        }
        let kind_labels = answer
            .kind_labels
            .into_iter()
            .map(|(kind, label)| {
                let mut label = printable(&label);
                if label.len() > MAX_LABEL_BYTES {
                    label = crate::text::truncate(label, MAX_LABEL_BYTES);
                }
                (kind, label)
            })
            .collect();
        Ok(Conventions {
            data_dir_markers,
            lock_file: answer.lock_file,
            index_database: answer.index_database,
            meta_table: answer.meta_table,
            kind_labels,
        })
    }

    /// How messages name a kind of database: the component's label, else the WIT case.
    pub fn kind_label(&self, kind: DatabaseKind) -> &str {
        self.kind_labels.iter().find(|(k, _)| *k == kind).map_or(kind.wit_name(), |(_, label)| label)
    }
}

/// One path segment: a name inside a directory, never `.`, `..`, empty or with a separator.
fn check_segment(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("not a file or directory name");
    }
    if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err("a file or directory name may hold no separator or control character");
    }
    if name.len() > 255 {
        return Err("longer than a file name may be");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::exports::blocklet::migrate::conventions::DataDirMarker as WitMarker;

    fn answer() -> ServerConventions {
        ServerConventions {
            data_dir_markers: vec![WitMarker { directory: ".srv".into(), config_file: "srv.toml".into() }],
            lock_file: "state/on-postgres".into(),
            index_database: "main_db".into(),
            meta_table: "schema_log".into(),
            kind_labels: vec![(DatabaseKind::Server, "Core".into())],
        }
    }

    #[test]
    fn a_components_answers_replace_the_defaults() {
        let c = Conventions::from_component(answer()).unwrap();
        assert_eq!(c.lock_file, "state/on-postgres");
        assert_eq!(c.meta_table, "schema_log");
        assert_eq!(c.data_dir_markers[0].directory, ".srv");
        assert_eq!(c.kind_label(DatabaseKind::Server), "Core");
        assert_eq!(c.kind_label(DatabaseKind::CertificateManager), "certificate-manager", "the WIT case");
        let old = Conventions::blocklet_server_1_17();
        assert_eq!(old.kind_label(DatabaseKind::Blocklet), "Blocklet");
        assert_eq!(old.lock_file, "core/sqlite-to-postgres.lock");
    }

    #[test]
    fn answers_that_would_reach_outside_the_data_dir_are_refused() {
        let with = |f: fn(&mut ServerConventions)| {
            let mut a = answer();
            f(&mut a);
            Conventions::from_component(a)
        };
        assert!(with(|a| a.lock_file = "../../etc/passwd".into()).unwrap_err().contains("lock file"));
        assert!(with(|a| a.lock_file = "/etc/passwd".into()).is_err());
        assert!(with(|a| a.lock_file = "core//x".into()).is_err());
        assert!(with(|a| a.data_dir_markers[0].directory = "a/b".into()).unwrap_err().contains("data dir"));
        assert!(with(|a| a.data_dir_markers.clear()).is_err());
        assert!(with(|a| a.index_database = "x\"; DROP".into()).unwrap_err().contains("index database"));
        assert!(with(|a| a.meta_table = String::new()).is_err());
        let c = with(|a| a.kind_labels = vec![(DatabaseKind::Server, "\u{1b}[2J".into())]).unwrap();
        assert_eq!(c.kind_label(DatabaseKind::Server), "\\u{1b}[2J");
    }
}
