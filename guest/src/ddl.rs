//! Reads the `pg_dump --schema-only` text of a real 1.17.12 server into statements and facts.
//!
//! The dump is the schema's single source of truth: its statements are replayed verbatim
//! (so the result is exactly what the server creates), and the facts the converter needs
//! (column types, enums, keys, sequences, foreign keys) are read off the same text.

use crate::sql::{first_line, split_statements, split_top_level, unquote};
use std::collections::BTreeMap;

/// When a statement runs relative to the data load. Constraints and indexes come after the
/// data, which is both faster and lets bad rows be reported instead of aborting the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Types, tables, sequences, column defaults.
    PreData,
    /// Primary keys, unique constraints, indexes.
    PostData,
    /// Foreign keys, last, once every referenced key exists.
    ForeignKeys,
}

/// One replayable statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub phase: Phase,
    pub sql: String,
    /// The key the statement enforces, so a failure can be explained row by row.
    pub enforces: Option<Enforces>,
    /// For pre-data: the table the statement creates or belongs to (its sequences, defaults,
    /// comments), so that a table's schema can be created just before its rows are loaded.
    /// `None` for what tables share (enum types).
    pub table: Option<String>,
}

/// What a constraint or unique index statement enforces on existing rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enforces {
    Unique { table: String, key: UniqueKey },
    Foreign(ForeignKey),
}

/// The PostgreSQL type of a column, as far as conversion cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgType {
    Varchar(Option<u32>),
    Text,
    SmallInt,
    Integer,
    BigInt,
    Double,
    Real,
    Boolean,
    Json,
    Jsonb,
    TimestampTz,
    Uuid,
    Bytea,
    Enum(String),
    /// A type this component does not convert; data for it is refused.
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgColumn {
    pub name: String,
    pub ty: PgType,
    pub not_null: bool,
    pub default: Option<String>,
}

/// A unique key: the primary key or a unique constraint/index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniqueKey {
    pub name: String,
    pub columns: Vec<String>,
    pub primary: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub table: String,
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
}

/// A sequence owned by a table column (a serial id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedSequence {
    pub name: String,
    pub table: String,
    pub column: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTable {
    pub name: String,
    pub columns: Vec<PgColumn>,
    pub unique_keys: Vec<UniqueKey>,
}

impl PgTable {
    pub fn column(&self, name: &str) -> Option<&PgColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn primary_key(&self) -> Option<&UniqueKey> {
        self.unique_keys.iter().find(|k| k.primary)
    }

    /// Columns that identify a row in reports: the primary key, else the first unique key.
    pub fn identity_columns(&self) -> Vec<String> {
        self.primary_key().or_else(|| self.unique_keys.first()).map(|k| k.columns.clone()).unwrap_or_default()
    }
}

/// Everything read off one dump.
#[derive(Clone, Debug, Default)]
pub struct PgSchema {
    pub statements: Vec<Statement>,
    /// Tables in dump order.
    pub tables: Vec<PgTable>,
    pub enums: BTreeMap<String, Vec<String>>,
    pub sequences: Vec<OwnedSequence>,
    pub foreign_keys: Vec<ForeignKey>,
}

impl PgSchema {
    pub fn table(&self, name: &str) -> Option<&PgTable> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Parse a `pg_dump --schema-only` text.
    pub fn parse(dump: &str) -> Result<PgSchema, String> {
        let mut schema = PgSchema::default();
        for sql in split_statements(dump) {
            schema.add(sql)?;
        }
        schema.anchor_sequences();
        Ok(schema)
    }

    fn add(&mut self, sql: String) -> Result<(), String> {
        let mut enforces = None;
        // For pre-data: the table the statement belongs to (a sequence's comes later, with its owner).
        let mut table = None;
        let head: String = sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        let phase = if head.starts_with("SET ") || head.starts_with("SELECT pg_catalog.set_config") {
            return Ok(()); // session settings of the dump itself
        } else if head.starts_with("CREATE TYPE") {
            let (name, labels) = parse_enum(&sql)?;
            self.enums.insert(name, labels);
            Phase::PreData
        } else if head.starts_with("CREATE TABLE") {
            let created = parse_table(&sql)?;
            table = Some(created.name.clone());
            self.tables.push(created);
            Phase::PreData
        } else if head.starts_with("CREATE SEQUENCE") {
            Phase::PreData
        } else if head.starts_with("ALTER SEQUENCE") {
            let owned = parse_owned_by(&sql)?;
            table = Some(owned.table.clone());
            self.sequences.push(owned);
            Phase::PreData
        } else if head.starts_with("ALTER TABLE") && sql.contains(" SET DEFAULT ") {
            table = altered_table(&sql);
            Phase::PreData
        } else if head.starts_with("ALTER TABLE") && sql.contains(" FOREIGN KEY ") {
            let fk = parse_foreign_key(&sql)?;
            enforces = Some(Enforces::Foreign(fk.clone()));
            self.foreign_keys.push(fk);
            Phase::ForeignKeys
        } else if head.starts_with("ALTER TABLE") && sql.contains(" ADD CONSTRAINT ") {
            let (table, key) = parse_constraint(&sql)?;
            self.table_mut(&table)?.unique_keys.push(key.clone());
            enforces = Some(Enforces::Unique { table, key });
            Phase::PostData
        } else if head.starts_with("CREATE UNIQUE INDEX") {
            if let Some((table, key)) = parse_unique_index(&sql) {
                self.table_mut(&table)?.unique_keys.push(key.clone());
                enforces = Some(Enforces::Unique { table, key });
            }
            Phase::PostData
        } else if head.starts_with("CREATE INDEX") {
            Phase::PostData
        } else if head.starts_with("COMMENT ON") {
            table = commented_table(&sql);
            Phase::PreData
        } else {
            return Err(format!("unexpected statement in schema dump: {}", first_line(&sql)));
        };
        self.statements.push(Statement { phase, sql, enforces, table });
        Ok(())
    }

    /// Give each `CREATE SEQUENCE` the table that owns the sequence (known only once the
    /// dump's later `ALTER SEQUENCE … OWNED BY` is read).
    fn anchor_sequences(&mut self) {
        for stmt in &mut self.statements {
            if let Some(name) = stmt.sql.strip_prefix("CREATE SEQUENCE ").and_then(|r| r.split_whitespace().next()) {
                let name = unqualify(name);
                stmt.table = self.sequences.iter().find(|s| s.name == name).map(|s| s.table.clone());
            }
        }
    }

    fn table_mut(&mut self, name: &str) -> Result<&mut PgTable, String> {
        self.tables
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("schema dump refers to unknown table {name}"))
    }
}

/// `COMMENT ON TABLE public.t …` or `COMMENT ON COLUMN public.t.c …` → `t`.
fn commented_table(sql: &str) -> Option<String> {
    let words: Vec<&str> = sql.split_whitespace().take(4).collect();
    match words.as_slice() {
        ["COMMENT", "ON", "TABLE", name] => Some(unqualify(name)),
        ["COMMENT", "ON", "COLUMN", qualified] => {
            split_qualified(qualified.strip_prefix("public.").unwrap_or(qualified)).map(|(t, _)| t)
        }
        _ => None,
    }
}

/// `public."enum_x"` or `public.enum_x` → `enum_x`.
pub fn unqualify(name: &str) -> String {
    let n = name.trim().strip_prefix("public.").unwrap_or(name.trim());
    unquote(n)
}

/// The text between the first `(` and its matching `)`.
fn parenthesised(s: &str) -> Option<&str> {
    let start = s.find('(')?;
    let mut depth = 0;
    let mut in_single = false;
    for (i, ch) in s[start..].char_indices() {
        match ch {
            '\'' => in_single = !in_single,
            '(' if !in_single => depth += 1,
            ')' if !in_single => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[start + 1..start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

fn column_list(s: &str) -> Vec<String> {
    split_top_level(s).iter().map(|c| unquote(c)).collect()
}

fn parse_enum(sql: &str) -> Result<(String, Vec<String>), String> {
    let name = sql
        .strip_prefix("CREATE TYPE ")
        .and_then(|r| r.split(" AS ENUM").next())
        .ok_or_else(|| format!("cannot read enum: {}", first_line(sql)))?;
    let body = parenthesised(sql).ok_or_else(|| format!("cannot read enum labels: {}", first_line(sql)))?;
    let labels = split_top_level(body).iter().map(|l| l.trim().trim_matches('\'').replace("''", "'")).collect();
    Ok((unqualify(name), labels))
}

fn parse_table(sql: &str) -> Result<PgTable, String> {
    let name = sql
        .strip_prefix("CREATE TABLE ")
        .and_then(|r| r.split(" (").next())
        .ok_or_else(|| format!("cannot read table: {}", first_line(sql)))?;
    let name = unqualify(name);
    let body = parenthesised(sql).ok_or_else(|| format!("cannot read columns of {name}"))?;
    let columns = split_top_level(body)
        .iter()
        .map(|def| parse_column(def).map_err(|e| format!("table {name}: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(PgTable { name, columns, unique_keys: Vec::new() })
}

fn parse_column(def: &str) -> Result<PgColumn, String> {
    let (name, rest) = if let Some(r) = def.strip_prefix('"') {
        let end = r.find('"').ok_or_else(|| format!("bad column {def}"))?;
        (r[..end].to_string(), r[end + 1..].trim())
    } else {
        let mut it = def.splitn(2, ' ');
        (it.next().unwrap_or("").to_string(), it.next().unwrap_or("").trim())
    };
    let mut rest = rest.to_string();
    let not_null = rest.ends_with(" NOT NULL");
    if not_null {
        rest.truncate(rest.len() - " NOT NULL".len());
    }
    let (ty, default) = match rest.find(" DEFAULT ") {
        Some(i) => (rest[..i].to_string(), Some(rest[i + " DEFAULT ".len()..].to_string())),
        None => (rest.clone(), None),
    };
    Ok(PgColumn { name, ty: pg_type(&ty), not_null, default })
}

/// Map a dumped type name to [`PgType`].
pub fn pg_type(ty: &str) -> PgType {
    let ty = ty.trim();
    if let Some(n) = ty.strip_prefix("character varying") {
        let len = n.trim().trim_start_matches('(').trim_end_matches(')').parse().ok();
        return PgType::Varchar(len);
    }
    match ty {
        "text" => PgType::Text,
        "smallint" => PgType::SmallInt,
        "integer" => PgType::Integer,
        "bigint" => PgType::BigInt,
        "double precision" => PgType::Double,
        "real" => PgType::Real,
        "boolean" => PgType::Boolean,
        "json" => PgType::Json,
        "jsonb" => PgType::Jsonb,
        "timestamp with time zone" => PgType::TimestampTz,
        "uuid" => PgType::Uuid,
        "bytea" => PgType::Bytea,
        other if other.starts_with("public.") => PgType::Enum(unqualify(other)),
        other => PgType::Other(other.to_string()),
    }
}

fn parse_owned_by(sql: &str) -> Result<OwnedSequence, String> {
    // ALTER SEQUENCE public.tags_id_seq OWNED BY public.tags.id;
    let err = || format!("cannot read sequence: {}", first_line(sql));
    let rest = sql.strip_prefix("ALTER SEQUENCE ").ok_or_else(err)?;
    let (seq, owner) = rest.split_once(" OWNED BY ").ok_or_else(err)?;
    let owner = owner.trim().trim_end_matches(';').strip_prefix("public.").ok_or_else(err)?;
    let (table, column) = split_qualified(owner).ok_or_else(err)?;
    Ok(OwnedSequence { name: unqualify(seq), table, column })
}

/// `tags.id`, `"a"."b"` → (`tags`, `id`).
fn split_qualified(s: &str) -> Option<(String, String)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.chars() {
        match ch {
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    (parts.len() == 2).then(|| (parts[0].clone(), parts[1].clone()))
}

/// `ALTER TABLE ONLY public.t` → `t`.
fn altered_table(sql: &str) -> Option<String> {
    let rest = sql.strip_prefix("ALTER TABLE ONLY ").or_else(|| sql.strip_prefix("ALTER TABLE "))?;
    let name = rest.split_whitespace().next()?;
    Some(unqualify(name))
}

fn constraint_name(sql: &str) -> Option<String> {
    let rest = &sql[sql.find("ADD CONSTRAINT ")? + "ADD CONSTRAINT ".len()..];
    Some(unquote(rest.split_whitespace().next()?))
}

fn parse_constraint(sql: &str) -> Result<(String, UniqueKey), String> {
    let err = || format!("cannot read constraint: {}", sql.replace('\n', " "));
    let table = altered_table(sql).ok_or_else(err)?;
    let name = constraint_name(sql).ok_or_else(err)?;
    let primary = sql.contains(" PRIMARY KEY ");
    if !primary && !sql.contains(" UNIQUE ") {
        return Err(err());
    }
    let cols = parenthesised(&sql[sql.find("ADD CONSTRAINT").ok_or_else(err)?..]).ok_or_else(err)?;
    Ok((table, UniqueKey { name, columns: column_list(cols), primary }))
}

fn parse_unique_index(sql: &str) -> Option<(String, UniqueKey)> {
    // CREATE UNIQUE INDEX name ON public.t USING btree (a, b);  — expression indexes are skipped.
    let rest = sql.strip_prefix("CREATE UNIQUE INDEX ")?;
    let (name, rest) = rest.split_once(" ON ")?;
    let table = unqualify(rest.split_whitespace().next()?);
    let cols = parenthesised(rest)?;
    if cols.contains('(') {
        return None;
    }
    Some((table, UniqueKey { name: unquote(name), columns: column_list(cols), primary: false }))
}

fn parse_foreign_key(sql: &str) -> Result<ForeignKey, String> {
    let err = || format!("cannot read foreign key: {}", sql.replace('\n', " "));
    let table = altered_table(sql).ok_or_else(err)?;
    let name = constraint_name(sql).ok_or_else(err)?;
    let fk = &sql[sql.find("FOREIGN KEY").ok_or_else(err)?..];
    let columns = column_list(parenthesised(fk).ok_or_else(err)?);
    let refs = &fk[fk.find("REFERENCES ").ok_or_else(err)? + "REFERENCES ".len()..];
    let ref_table = unqualify(&refs[..refs.find('(').ok_or_else(err)?]);
    let ref_columns = column_list(parenthesised(refs).ok_or_else(err)?);
    Ok(ForeignKey { name, table, columns, ref_table, ref_columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
--
-- comment
--
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

CREATE TYPE public."enum_a_b" AS ENUM (
    'x',
    'it''s'
);

CREATE TABLE public.tags (
    id integer NOT NULL,
    title character varying(64) NOT NULL,
    "parentId" integer,
    kind public."enum_a_b" DEFAULT 'x'::public."enum_a_b",
    meta jsonb DEFAULT '{}'::jsonb,
    "createdAt" timestamp with time zone
);

CREATE SEQUENCE public.tags_id_seq
    AS integer
    START WITH 1
    CACHE 1;

ALTER SEQUENCE public.tags_id_seq OWNED BY public.tags.id;

ALTER TABLE ONLY public.tags ALTER COLUMN id SET DEFAULT nextval('public.tags_id_seq'::regclass);

ALTER TABLE ONLY public.tags
    ADD CONSTRAINT tags_pkey PRIMARY KEY (id);

CREATE UNIQUE INDEX "tags_title_index" ON public.tags USING btree (title);
CREATE INDEX x ON public.tags USING btree (((meta ->> 'did'::text)));

ALTER TABLE ONLY public.tags
    ADD CONSTRAINT "tags_parentId_fkey" FOREIGN KEY ("parentId") REFERENCES public.tags(id) ON DELETE CASCADE;
"#;

    #[test]
    fn reads_statements_and_facts() {
        let s = PgSchema::parse(SAMPLE).unwrap();
        assert_eq!(s.enums["enum_a_b"], vec!["x", "it's"]);
        let t = s.table("tags").unwrap();
        assert_eq!(t.columns.len(), 6);
        assert_eq!(t.column("title").unwrap().ty, PgType::Varchar(Some(64)));
        assert!(t.column("title").unwrap().not_null);
        assert_eq!(t.column("kind").unwrap().ty, PgType::Enum("enum_a_b".into()));
        assert_eq!(t.column("meta").unwrap().default.as_deref(), Some("'{}'::jsonb"));
        assert_eq!(t.primary_key().unwrap().columns, vec!["id"]);
        assert_eq!(t.unique_keys.len(), 2);
        assert_eq!(
            s.sequences,
            vec![OwnedSequence { name: "tags_id_seq".into(), table: "tags".into(), column: "id".into() }]
        );
        assert_eq!(s.foreign_keys[0].columns, vec!["parentId"]);
        assert_eq!(s.foreign_keys[0].ref_table, "tags");
        let phases: Vec<Phase> = s.statements.iter().map(|s| s.phase).collect();
        assert_eq!(
            phases,
            vec![
                Phase::PreData,
                Phase::PreData,
                Phase::PreData,
                Phase::PreData,
                Phase::PreData,
                Phase::PostData,
                Phase::PostData,
                Phase::PostData,
                Phase::ForeignKeys
            ]
        );
    }

    #[test]
    fn pre_data_statements_know_their_table() {
        let s = PgSchema::parse(SAMPLE).unwrap();
        let tables: Vec<Option<&str>> =
            s.statements.iter().filter(|s| s.phase == Phase::PreData).map(|s| s.table.as_deref()).collect();
        assert_eq!(tables, vec![None, Some("tags"), Some("tags"), Some("tags"), Some("tags")]);
        assert_eq!(
            commented_table(r#"COMMENT ON COLUMN public."oauthClients".scope IS 'x';"#).as_deref(),
            Some("oauthClients")
        );
        let meta =
            PgSchema::parse("CREATE TABLE public.\"SequelizeMeta\" (\n    name character varying(255) NOT NULL\n);\n")
                .unwrap();
        assert_eq!(meta.statements[0].table.as_deref(), Some("SequelizeMeta"));
    }

    #[test]
    fn refuses_unknown_statements() {
        assert!(PgSchema::parse("DROP TABLE x;").is_err());
    }
}
