//! The server conventions the host acts on but does not know itself (WIT `conventions`): how a
//! data dir is recognised, the lock file that switches the server to PostgreSQL, the database
//! that lists the others, the meta table, and what each kind of database is called. Data of
//! the Blocklet Server version in [`crate::catalog`], read off the real server.

use crate::catalog::{KINDS, Kind, KindFacts, META_TABLE};
use crate::naming::database_name;

/// A directory of this name holding this config file is a data dir.
pub struct DataDirMarker {
    pub directory: &'static str,
    pub config_file: &'static str,
}

/// The markers the server itself looks for, current layout first, then the legacy one.
pub const DATA_DIR_MARKERS: [DataDirMarker; 2] = [
    DataDirMarker { directory: ".blocklet-server", config_file: "config.yml" },
    DataDirMarker { directory: ".abtnode", config_file: "abtnode.yml" },
];

/// Written, relative to the data dir, once the databases live in PostgreSQL: the server reads
/// its presence at start to choose PostgreSQL.
#[cfg(not(feature = "test-other-conventions"))]
pub const LOCK_FILE: &str = "core/sqlite-to-postgres.lock";

/// Tests only (`test-other-conventions`): a server that looks for another lock file, so a test
/// can prove the host takes the path from the component.
#[cfg(feature = "test-other-conventions")]
pub const LOCK_FILE: &str = "core/other-conventions.lock";

/// The PostgreSQL database that lists the others: the server kind's database.
pub fn index_database() -> String {
    database_name(Kind::Server.facts().sqlite_pattern)
}

/// The table the component fills with the schema migrations it reproduced.
pub const fn meta_table() -> &'static str {
    META_TABLE
}

/// Every kind with the label the server's migration command prints for it.
pub fn kind_labels() -> impl Iterator<Item = (Kind, &'static str)> {
    KINDS.iter().map(|k: &KindFacts| (k.kind, k.label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_database_is_the_index() {
        assert_eq!(index_database(), "server_db");
    }

    #[test]
    fn the_build_chooses_lock_file_and_meta_table() {
        let expected = if cfg!(feature = "test-other-conventions") {
            ("core/other-conventions.lock", "MigrationMeta")
        } else {
            ("core/sqlite-to-postgres.lock", "SequelizeMeta")
        };
        assert_eq!((LOCK_FILE, meta_table()), expected);
    }

    #[test]
    fn every_kind_has_a_label() {
        let labels: Vec<_> = kind_labels().collect();
        assert_eq!(labels.len(), KINDS.len());
        assert!(labels.contains(&(Kind::Server, "Server")));
        assert!(labels.contains(&(Kind::CertificateManager, "certificate-manager")));
    }
}
