//! The Blocklet Server 1.17.12 databases: where each lives, its PostgreSQL schema and its
//! schema migrations. This is data, embedded from `guest/schema/blocklet-1.17.12/` (read off a
//! real server), not code: supporting a newer server means adding its files here.

use crate::ddl::{PgSchema, PgTable};
use crate::sqlite_ddl::SqliteSchema;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// The Blocklet Server version whose schema this component reproduces.
pub const SERVER_VERSION: &str = "1.17.12";

/// The four kinds of database a Blocklet Server keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Server,
    Service,
    Blocklet,
    CertificateManager,
}

/// Static facts of one kind.
pub struct KindFacts {
    pub kind: Kind,
    /// The umzug group name, as in `sequelize-meta/<group>.txt`.
    pub group: &'static str,
    /// How the original command names it in `✔ <label> schema successfully migrated`.
    pub label: &'static str,
    /// Where the file lives, relative to the data dir (`*` = one path segment).
    pub sqlite_pattern: &'static str,
    pg_dump: &'static str,
    sqlite_schema: &'static str,
    migrations: &'static str,
}

macro_rules! schema_file {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/blocklet-1.17.12/", $name))
    };
}

/// Extra server-kind schema appended by the `test-extra-migration` feature: one more migration
/// and the table it creates, so a test can prove that a second component, run on the same host
/// binary, knows something the bundled one does not. Data only; the default build appends nothing.
#[cfg(feature = "test-extra-migration")]
mod extra {
    pub const SERVER_PG: &str = concat!(
        schema_file!("pg-server_db.sql"),
        "\nCREATE TABLE public.test_extras (\n    id character varying(80) NOT NULL,\n    note text\n);\n\n",
        "ALTER TABLE ONLY public.test_extras\n    ADD CONSTRAINT test_extras_pkey PRIMARY KEY (id);\n"
    );
    pub const SERVER_SQLITE: &str = concat!(
        schema_file!("sqlite-server.sql"),
        "\nCREATE TABLE `test_extras` (`id` VARCHAR(80) PRIMARY KEY, `note` TEXT);\n"
    );
    pub const SERVER_MIGRATIONS: &str =
        concat!(schema_file!("sequelize-meta/server.txt"), "\n20991231000000-test-extra.js\n");
}

#[cfg(not(feature = "test-extra-migration"))]
mod extra {
    pub const SERVER_PG: &str = schema_file!("pg-server_db.sql");
    pub const SERVER_SQLITE: &str = schema_file!("sqlite-server.sql");
    pub const SERVER_MIGRATIONS: &str = schema_file!("sequelize-meta/server.txt");
}

pub static KINDS: [KindFacts; 4] = [
    KindFacts {
        kind: Kind::Server,
        group: "server",
        label: "Server",
        sqlite_pattern: "core/server.db",
        pg_dump: extra::SERVER_PG,
        sqlite_schema: extra::SERVER_SQLITE,
        migrations: extra::SERVER_MIGRATIONS,
    },
    KindFacts {
        kind: Kind::Service,
        group: "service",
        label: "Service",
        sqlite_pattern: "services/service.db",
        pg_dump: schema_file!("pg-service_db.sql"),
        sqlite_schema: schema_file!("sqlite-service.sql"),
        migrations: schema_file!("sequelize-meta/service.txt"),
    },
    KindFacts {
        kind: Kind::Blocklet,
        group: "blocklet",
        label: "Blocklet",
        sqlite_pattern: "data/*/blocklet.db",
        pg_dump: schema_file!("pg-blocklet_db_APPDID.sql"),
        sqlite_schema: schema_file!("sqlite-blocklet.sql"),
        migrations: schema_file!("sequelize-meta/blocklet.txt"),
    },
    KindFacts {
        kind: Kind::CertificateManager,
        group: "certificate-manager",
        label: "certificate-manager",
        sqlite_pattern: "modules/certificate-manager/module.db",
        pg_dump: schema_file!("pg-module_db.sql"),
        sqlite_schema: schema_file!("sqlite-certificate-manager.sql"),
        migrations: schema_file!("sequelize-meta/certificate-manager.txt"),
    },
];

/// The table umzug records applied migrations in; regenerated, never copied.
#[cfg(not(feature = "test-other-conventions"))]
pub const META_TABLE: &str = "SequelizeMeta";

/// Tests only (`test-other-conventions`): a component whose server keeps its migrations in a
/// table of another name, so a test can prove the host takes the name from the component.
#[cfg(feature = "test-other-conventions")]
pub const META_TABLE: &str = "MigrationMeta";

/// The meta table as the embedded schema files name it.
const SCHEMA_META_TABLE: &str = "SequelizeMeta";

/// `schema` with its meta table, and the keys named after it, renamed from the files'
/// [`SCHEMA_META_TABLE`] to [`META_TABLE`]: every mention of the table is the identifier
/// quoted with `quote`, so renaming those quoted names renames the table and nothing else.
fn with_meta_table(schema: &'static str, quote: char) -> Cow<'static, str> {
    if META_TABLE == SCHEMA_META_TABLE {
        return Cow::Borrowed(schema);
    }
    Cow::Owned(schema.replace(&format!("{quote}{SCHEMA_META_TABLE}"), &format!("{quote}{META_TABLE}")))
}

/// Parsed schema facts of one kind, built once.
pub struct Catalog {
    pub facts: &'static KindFacts,
    pub schema: PgSchema,
    /// The SQLite schema the server creates for the same database.
    pub sqlite: SqliteSchema,
    pub migrations: Vec<&'static str>,
    /// Data tables (all but [`META_TABLE`]) in an order that loads parents before children.
    pub load_order: Vec<String>,
}

impl Kind {
    pub fn facts(self) -> &'static KindFacts {
        KINDS.iter().find(|k| k.kind == self).expect("every kind has facts")
    }

    /// The parsed catalog of this kind.
    pub fn catalog(self) -> &'static Catalog {
        static CATALOGS: OnceLock<BTreeMap<Kind, Catalog>> = OnceLock::new();
        let all = CATALOGS.get_or_init(|| {
            KINDS
                .iter()
                .map(|f| (f.kind, Catalog::build(f).unwrap_or_else(|e| panic!("embedded {} schema: {e}", f.group))))
                .collect()
        });
        &all[&self]
    }
}

impl Catalog {
    fn build(facts: &'static KindFacts) -> Result<Catalog, String> {
        let schema = PgSchema::parse(&with_meta_table(facts.pg_dump, '"'))?;
        let sqlite = SqliteSchema::parse(&with_meta_table(facts.sqlite_schema, '`'))?;
        for t in &schema.tables {
            let Some(st) = sqlite.table(&t.name) else {
                return Err(format!("table {} has no SQLite definition", t.name));
            };
            if st.columns.len() != t.columns.len()
                || t.columns.iter().any(|c| !st.columns.iter().any(|(n, _)| *n == c.name))
            {
                return Err(format!("table {}: SQLite and PostgreSQL columns differ", t.name));
            }
        }
        let migrations = facts.migrations.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let load_order = load_order(&schema)?;
        Ok(Catalog { facts, schema, sqlite, migrations, load_order })
    }

    pub fn table(&self, name: &str) -> Option<&PgTable> {
        self.schema.table(name)
    }
}

/// Tables sorted so that every table comes after the tables its foreign keys reference
/// (self-references aside); ties keep the dump's (alphabetical) order.
pub fn load_order(schema: &PgSchema) -> Result<Vec<String>, String> {
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).filter(|n| *n != META_TABLE).collect();
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = names.iter().map(|n| (*n, BTreeSet::new())).collect();
    for fk in &schema.foreign_keys {
        if fk.table != fk.ref_table
            && let Some(p) = parents.get_mut(fk.table.as_str())
        {
            p.insert(fk.ref_table.as_str());
        }
    }
    let mut done: Vec<String> = Vec::new();
    while done.len() < names.len() {
        let next = names
            .iter()
            .find(|n| !done.iter().any(|d| d == *n) && parents[*n].iter().all(|p| done.iter().any(|d| d == p)))
            .ok_or("foreign keys form a cycle")?;
        done.push(next.to_string());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(order: &[String], t: &str) -> usize {
        order.iter().position(|x| x == t).unwrap_or_else(|| panic!("{t} missing"))
    }

    #[test]
    fn every_embedded_schema_parses_with_the_expected_tables() {
        let counts =
            [(Kind::Server, 28, 74), (Kind::Service, 1, 4), (Kind::Blocklet, 28, 79), (Kind::CertificateManager, 4, 5)];
        for (kind, tables, migrations) in counts {
            let c = kind.catalog();
            assert_eq!(c.load_order.len(), tables, "{kind:?}");
            assert_eq!(c.migrations.len(), migrations, "{kind:?}");
        }
    }

    #[test]
    fn parents_load_before_children() {
        // The original copied permissions before orgs and failed on org-scoped roles.
        for kind in [Kind::Server, Kind::Blocklet] {
            let o = &kind.catalog().load_order;
            assert!(pos(o, "orgs") < pos(o, "permissions"));
            assert!(pos(o, "users") < pos(o, "orgs"));
            assert!(pos(o, "passports") < pos(o, "passport_logs"));
            assert!(pos(o, "orgs") < pos(o, "user_orgs"));
        }
        let o = &Kind::Blocklet.catalog().load_order;
        assert!(pos(o, "users") < pos(o, "user_followers"));
    }

    /// Tables are created one by one just before their rows: every pre-data statement except
    /// the enum types must belong to a table, and what a table's statements use must exist
    /// by then (its own sequences; the types, created first).
    #[test]
    fn pre_data_belongs_to_tables() {
        use crate::ddl::Phase;
        for kind in [Kind::Server, Kind::Service, Kind::Blocklet, Kind::CertificateManager] {
            let c = kind.catalog();
            for stmt in c.schema.statements.iter().filter(|s| s.phase == Phase::PreData) {
                match &stmt.table {
                    None => assert!(stmt.sql.starts_with("CREATE TYPE"), "{kind:?}: no table for {}", stmt.sql),
                    Some(t) => {
                        assert!(c.table(t).is_some(), "{kind:?}: {t} is not a table ({})", stmt.sql);
                        if let Some(seq) = stmt.sql.split("nextval('").nth(1) {
                            let seq = crate::ddl::unqualify(seq.split('\'').next().unwrap());
                            let owner = c.schema.sequences.iter().find(|s| s.name == seq).map(|s| &s.table);
                            assert_eq!(owner, Some(t), "{kind:?}: {t}'s default uses {seq}");
                        }
                    }
                }
            }
            // Every table is created: in the load order, or after it.
            for t in &c.schema.tables {
                assert!(
                    c.schema
                        .statements
                        .iter()
                        .any(|s| s.table.as_ref() == Some(&t.name) && s.sql.starts_with("CREATE TABLE")),
                    "{kind:?}: {}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn the_meta_table_is_created_under_its_conventional_name() {
        for kind in [Kind::Server, Kind::Service, Kind::Blocklet, Kind::CertificateManager] {
            let c = kind.catalog();
            assert!(c.table(META_TABLE).is_some(), "{kind:?}");
            assert!(c.sqlite.table(META_TABLE).is_some(), "{kind:?}");
            assert!(!c.load_order.iter().any(|t| t == META_TABLE), "{kind:?}: the meta table is regenerated");
            let meta_sql: Vec<&str> = c
                .schema
                .statements
                .iter()
                .filter(|s| s.sql.contains(&format!("\"{META_TABLE}")))
                .map(|s| s.sql.as_str())
                .collect();
            assert_eq!(meta_sql.len(), 2, "{kind:?}: the table and its primary key: {meta_sql:?}");
            assert!(
                meta_sql[1].contains(&format!("ADD CONSTRAINT \"{META_TABLE}_pkey\" PRIMARY KEY (name)")),
                "{kind:?}: {}",
                meta_sql[1]
            );
        }
    }

    #[cfg(not(feature = "test-other-conventions"))]
    #[test]
    fn the_default_build_keeps_the_schema_text() {
        assert!(matches!(with_meta_table("CREATE TABLE `SequelizeMeta` (x);", '`'), Cow::Borrowed(_)));
    }

    #[cfg(feature = "test-other-conventions")]
    #[test]
    fn another_meta_table_replaces_sequelizes_everywhere() {
        assert_eq!(META_TABLE, "MigrationMeta");
        for kind in [Kind::Server, Kind::Service, Kind::Blocklet, Kind::CertificateManager] {
            let c = kind.catalog();
            assert!(c.table("SequelizeMeta").is_none() && c.sqlite.table("SequelizeMeta").is_none(), "{kind:?}");
            assert!(!c.schema.statements.iter().any(|s| s.sql.contains("SequelizeMeta")), "{kind:?}");
            assert!(!c.sqlite.tables.iter().any(|t| t.create_sql.contains("SequelizeMeta")), "{kind:?}");
            assert!(c.sqlite.table("MigrationMeta").unwrap().create_sql.starts_with("CREATE TABLE `MigrationMeta` ("));
        }
        assert_eq!(
            with_meta_table(
                "ALTER TABLE ONLY public.\"SequelizeMeta\" ADD CONSTRAINT \"SequelizeMeta_pkey\" PRIMARY KEY (name);",
                '"'
            ),
            "ALTER TABLE ONLY public.\"MigrationMeta\" ADD CONSTRAINT \"MigrationMeta_pkey\" PRIMARY KEY (name);"
        );
    }

    #[test]
    fn facts_match_the_reference() {
        let server = Kind::Server.catalog();
        let seqs: Vec<&str> = server.schema.sequences.iter().map(|s| s.table.as_str()).collect();
        assert_eq!(seqs, vec!["blacklists", "passport_logs", "runtime_insights", "tags"]);
        assert_eq!(server.schema.enums["enum_notifications_feedType"], vec!["graphic", "data_tracker", ""]);
        assert_eq!(
            Kind::Blocklet.catalog().schema.enums["enum_notifications_feedType"],
            vec!["graphic", "data-tracker", ""]
        );
        let tagging = server.table("tagging").unwrap();
        assert!(tagging.primary_key().is_none());
        assert_eq!(tagging.identity_columns(), vec!["tagId", "taggableId"]);
        assert_eq!(
            server.table("org_resources").unwrap().primary_key().unwrap().columns,
            vec!["id", "orgId", "resourceId"]
        );
    }
}
