//! What the ceiling needs to know about the target schema: the 1.17.12 PostgreSQL DDL (split into
//! pre-data and post-data) and each column's PostgreSQL type.
//!
//! The DDL is the guest's own copy (`guest/schema/blocklet-1.17.12/pg-*.sql`, a `pg_dump
//! --schema-only` of what a real server creates); the column types come from
//! `tests/reference/blocklet-1.17.12/schema-facts.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use blocklet_migrate_test_support::statements;
use serde_json::Value;

/// The database kinds, as schema-facts.json names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Server,
    Service,
    CertificateManager,
    Blocklet,
}

impl Kind {
    pub fn facts_key(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Service => "service",
            Kind::CertificateManager => "certificate-manager",
            Kind::Blocklet => "blocklet",
        }
    }

    fn ddl_file(self) -> &'static str {
        match self {
            Kind::Server => "pg-server_db.sql",
            Kind::Service => "pg-service_db.sql",
            Kind::CertificateManager => "pg-module_db.sql",
            Kind::Blocklet => "pg-blocklet_db_APPDID.sql",
        }
    }
}

/// One SQLite file of a data dir and the PostgreSQL database the tool makes of it.
#[derive(Clone, Debug)]
pub struct SourceDb {
    pub kind: Kind,
    pub file: PathBuf,
    /// `server_db`, `blocklet_db_<appDid>`, …
    pub pg_name: String,
}

/// The databases of a data dir, in the tool's naming: server, service, certificate-manager, then
/// every `data/<appDid>/blocklet.db`.
pub fn source_dbs(data_dir: &Path) -> Result<Vec<SourceDb>> {
    let mut v = vec![
        SourceDb { kind: Kind::Server, file: data_dir.join("core/server.db"), pg_name: "server_db".into() },
        SourceDb { kind: Kind::Service, file: data_dir.join("services/service.db"), pg_name: "service_db".into() },
        SourceDb {
            kind: Kind::CertificateManager,
            file: data_dir.join("modules/certificate-manager/module.db"),
            pg_name: "module_db".into(),
        },
    ];
    let mut apps: Vec<String> = fs::read_dir(data_dir.join("data"))
        .with_context(|| format!("read {}/data", data_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("blocklet.db").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    apps.sort();
    for did in apps {
        v.push(SourceDb {
            kind: Kind::Blocklet,
            file: data_dir.join("data").join(&did).join("blocklet.db"),
            pg_name: format!("blocklet_db_{did}"),
        });
    }
    for db in &v {
        if !db.file.is_file() {
            bail!("{} is missing", db.file.display());
        }
    }
    Ok(v)
}

/// A pg_dump file split the way a bulk load wants it.
#[derive(Clone, Debug, Default)]
pub struct Ddl {
    /// CREATE TYPE / TABLE / SEQUENCE, ALTER SEQUENCE, ALTER … SET DEFAULT, COMMENT.
    pub pre: Vec<String>,
    /// Primary keys, unique constraints, indexes, foreign keys (in dump order).
    pub post: Vec<String>,
}

/// Split a `pg_dump --schema-only` text into [`statements`]; `SET`, `SELECT
/// pg_catalog.set_config` and comments are dropped.
pub fn split_ddl(text: &str) -> Ddl {
    let mut ddl = Ddl::default();
    for stmt in statements(text) {
        let head = stmt.trim_start();
        let upper = head.to_ascii_uppercase();
        if upper.starts_with("SET ") || upper.starts_with("SELECT PG_CATALOG.SET_CONFIG") {
            continue;
        }
        let pre = upper.starts_with("CREATE TYPE")
            || upper.starts_with("CREATE TABLE")
            || upper.starts_with("CREATE SEQUENCE")
            || upper.starts_with("ALTER SEQUENCE")
            || upper.starts_with("COMMENT")
            || (upper.starts_with("ALTER TABLE") && upper.contains(" SET DEFAULT "));
        if pre {
            ddl.pre.push(stmt);
        } else {
            ddl.post.push(stmt);
        }
    }
    ddl
}

/// How a column is written in binary COPY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float8,
    /// text, varchar and enum labels: the UTF-8 bytes.
    Text,
    Json,
    Jsonb,
    Timestamptz,
    Uuid,
}

/// One target column.
#[derive(Clone, Debug)]
pub struct PgColumn {
    pub name: String,
    pub ty: PgType,
}

/// The schema knowledge for one kind: DDL plus table → columns.
pub struct KindSchema {
    pub ddl: Ddl,
    pub tables: BTreeMap<String, Vec<PgColumn>>,
}

pub struct Schemas {
    by_kind: BTreeMap<Kind, KindSchema>,
}

impl Schemas {
    pub fn load(repo: &Path) -> Result<Schemas> {
        let facts_path = repo.join("tests/reference/blocklet-1.17.12/schema-facts.json");
        let facts: Value = serde_json::from_str(
            &fs::read_to_string(&facts_path).with_context(|| format!("read {}", facts_path.display()))?,
        )
        .context("parse schema-facts.json")?;
        let mut by_kind = BTreeMap::new();
        for kind in [Kind::Server, Kind::Service, Kind::CertificateManager, Kind::Blocklet] {
            let ddl_path = repo.join("guest/schema/blocklet-1.17.12").join(kind.ddl_file());
            let ddl =
                split_ddl(&fs::read_to_string(&ddl_path).with_context(|| format!("read {}", ddl_path.display()))?);
            let k = &facts[kind.facts_key()];
            let enums: BTreeSet<&str> =
                k["pg_enums"].as_array().context("pg_enums")?.iter().filter_map(|e| e["typname"].as_str()).collect();
            let mut tables = BTreeMap::new();
            for (table, t) in k["postgres"].as_object().context("postgres tables")? {
                let mut cols = Vec::new();
                for c in t["columns"].as_array().context("columns")? {
                    let name = c["column_name"].as_str().context("column_name")?;
                    let udt = c["udt_name"].as_str().context("udt_name")?;
                    let ty = if enums.contains(udt) {
                        PgType::Text
                    } else {
                        match udt {
                            "bool" => PgType::Bool,
                            "int2" => PgType::Int2,
                            "int4" => PgType::Int4,
                            "int8" => PgType::Int8,
                            "float8" => PgType::Float8,
                            "text" | "varchar" => PgType::Text,
                            "json" => PgType::Json,
                            "jsonb" => PgType::Jsonb,
                            "timestamptz" => PgType::Timestamptz,
                            "uuid" => PgType::Uuid,
                            other => bail!("{}.{table}.{name}: type {other} not handled", kind.facts_key()),
                        }
                    };
                    cols.push((c["ordinal_position"].as_i64().unwrap_or(0), PgColumn { name: name.to_string(), ty }));
                }
                cols.sort_by_key(|(pos, _)| *pos);
                tables.insert(table.clone(), cols.into_iter().map(|(_, c)| c).collect());
            }
            by_kind.insert(kind, KindSchema { ddl, tables });
        }
        Ok(Schemas { by_kind })
    }

    pub fn get(&self, kind: Kind) -> &KindSchema {
        &self.by_kind[&kind]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_dump() {
        let text = "--\n-- x\n--\n\nSET a = 1;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\
                    CREATE TYPE public.e AS ENUM (\n    'a',\n    'b'\n);\n\n\
                    CREATE TABLE public.t (\n    id integer NOT NULL\n);\n\n\
                    CREATE SEQUENCE public.t_id_seq\n    AS integer;\n\
                    ALTER SEQUENCE public.t_id_seq OWNED BY public.t.id;\n\
                    ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('public.t_id_seq'::regclass);\n\
                    ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n\
                    CREATE INDEX t_i ON public.t USING btree (id);\n";
        let d = split_ddl(text);
        assert_eq!(d.pre.len(), 5, "{:?}", d.pre);
        assert_eq!(d.post.len(), 2, "{:?}", d.post);
        assert!(d.pre[0].starts_with("CREATE TYPE") && d.pre[0].ends_with(");"));
        assert!(d.post[0].contains("PRIMARY KEY"));
    }

    #[test]
    fn real_dumps_split_completely() {
        let repo = blocklet_migrate_test_support::workspace_root();
        let s = Schemas::load(&repo).expect("load schemas");
        let server = s.get(Kind::Server);
        assert!(server.ddl.pre.iter().any(|x| x.contains("audit_logs")));
        assert!(server.ddl.post.iter().any(|x| x.contains("FOREIGN KEY")));
        assert!(server.tables.contains_key("audit_logs"));
        for kind in [Kind::Server, Kind::Blocklet] {
            let creates = s.get(kind).ddl.pre.iter().filter(|x| x.starts_with("CREATE TABLE")).count();
            assert_eq!(creates, s.get(kind).tables.len(), "{kind:?}");
        }
    }
}
