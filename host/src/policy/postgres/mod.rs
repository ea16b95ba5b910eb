//! The host's allowlist for SQL a component asks to run on a PostgreSQL database.
//!
//! A component may only run what a schema migration needs: create types, tables, sequences
//! and indexes, add keys, set column defaults and sequence values, comment on columns, drop
//! objects it is about to recreate, fill the server's meta table (which the component's
//! conventions name, passed in by the caller), use savepoints, and run read-only checks. Every statement is parsed with a real SQL parser (`sqlparser`, PostgreSQL
//! dialect) and walked in full: the statement kind, every function called anywhere in it
//! (allowlist), every relation it names (schema `public` only) and every `FROM` item. Anything
//! else is refused with a message naming what was refused.
//!
//! Defence in depth, because a parser that disagrees with the server about where a statement
//! ends would let a second statement through: the raw text is also split the way
//! PostgreSQL's own lexer splits it (quotes, `E''` strings, dollar quotes, nested comments),
//! under both settings of `standard_conforming_strings`, and must hold exactly one statement.
//! NUL and other control characters, and statements over [`MAX_STATEMENT_BYTES`], are refused.

mod lexer;
#[cfg(test)]
mod tests;
mod walk;

use lexer::{first_words, leading_words, pg_lexer_single_statement, statement_kind};
use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, CommentObject, Expr, IndexType, ObjectName, ObjectNamePart, ObjectType,
    SetExpr, Statement, TableConstraint, TableObject, UserDefinedTypeRepresentation, Value, Visit,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::ops::ControlFlow;
use walk::{Guard, check_alter_sequence_owned_by, check_name, is_public};

/// Longest statement accepted. The largest statement of the 1.17.12 schema is a few KiB.
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// How deeply expressions and queries may nest (the parser's own guard against stack
/// exhaustion on hostile input).
const RECURSION_LIMIT: usize = 64;

/// Functions any checked statement may call: pure built-ins that the migration's defaults,
/// checks and sequence updates use, and a few of their obvious relatives.
pub(super) const PURE_FUNCTIONS: &[&str] = &[
    "array_length",
    "array_position",
    "avg",
    "bool_and",
    "bool_or",
    "cardinality",
    "char_length",
    "coalesce",
    "concat",
    "concat_ws",
    "count",
    "current_timestamp",
    "greatest",
    "json_typeof",
    "jsonb_typeof",
    "least",
    "length",
    "lower",
    "max",
    "min",
    "now",
    "nullif",
    "octet_length",
    "sum",
    "upper",
];

/// Sequence functions: allowed in statements run with `execute` (column defaults, setting
/// sequences past the copied ids), never in read-only queries, and only on a sequence of
/// schema `public` named by a string literal.
pub(super) const SEQUENCE_FUNCTIONS: &[&str] = &["nextval", "setval"];

/// Leading keywords of the statements this guard may accept, to tell an unparsable
/// allowed statement from a statement kind the parser does not know (`ALTER SYSTEM`, `DO`).
const ALLOWED_KINDS: &[&str] = &[
    "ALTER SEQUENCE",
    "ALTER TABLE",
    "COMMENT ON",
    "CREATE INDEX",
    "CREATE SEQUENCE",
    "CREATE TABLE",
    "CREATE TYPE",
    "CREATE UNIQUE INDEX",
    "DROP INDEX",
    "DROP SEQUENCE",
    "DROP TABLE",
    "DROP TYPE",
    "INSERT",
    "RELEASE",
    "ROLLBACK",
    "SAVEPOINT",
    "SELECT",
    "TABLE",
    "VALUES",
    "WITH",
];

/// Which handle call a statement came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode<'a> {
    /// `handle.execute` on a target: schema statements, sequence updates, inserts into the
    /// meta table named here.
    Execute(&'a str),
    /// `handle.query`: read-only selects only.
    Query,
}

/// Check one statement a component asks to run with `execute` on a PostgreSQL target, where
/// `meta_table` is the one table it may `INSERT` literal values into. When it is on the
/// allowlist: the table or sequence of schema `public` it creates, if it creates one; otherwise
/// a message naming what was refused.
pub fn target_statement_creates(sql: &str, meta_table: &str) -> Result<Option<String>, String> {
    check(sql, Mode::Execute(meta_table)).map(|checked| checked.creates)
}

/// Check one statement a component asks to run with `query` (on a PostgreSQL target or
/// source): a read-only `SELECT` calling only pure functions, and nothing else. When it is: the
/// tables (or sequences) it reads, by name in schema `public` (names of its own `WITH` queries
/// left out).
pub fn read_only_query_relations(sql: &str) -> Result<Vec<String>, String> {
    check(sql, Mode::Query).map(|checked| checked.relations)
}

/// What a statement that passed the checks touches.
struct Checked {
    /// The relations it reads.
    relations: Vec<String>,
    /// The table or sequence it creates.
    creates: Option<String>,
}

fn check(sql: &str, mode: Mode<'_>) -> Result<Checked, String> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(format!("refused a statement of {} bytes: the limit is {MAX_STATEMENT_BYTES}", sql.len()));
    }
    if let Some(c) = sql.chars().find(|&c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(format!("refused a statement containing the control character U+{:04X}", c as u32));
    }
    pg_lexer_single_statement(sql)?;
    let dialect = PostgreSqlDialect {};
    let parsed = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements());
    let statements = match parsed {
        Ok(s) => s,
        Err(e) => {
            // sqlparser has no ALTER SEQUENCE; the dump's one form is recognised token by token.
            if matches!(mode, Mode::Execute(_)) && leading_words(sql, 2) == "ALTER SEQUENCE" {
                return check_alter_sequence_owned_by(sql).map(|()| Checked { relations: Vec::new(), creates: None });
            }
            let kind = statement_kind(sql);
            return Err(if leading_words(sql, 1).is_empty() {
                format!("refused a statement that does not parse as PostgreSQL: {e}")
            } else if ALLOWED_KINDS.contains(&kind.as_str()) {
                format!("refused a {kind} statement that does not parse as PostgreSQL: {e}")
            } else {
                format!("refused {kind}: not a statement a schema migration needs")
            });
        }
    };
    let statement = match statements.as_slice() {
        [] => return Err("refused an empty statement".into()),
        [one] => one,
        more => {
            return Err(format!("refused {} statements in one string: send one statement per call", more.len()));
        }
    };
    check_statement(statement, sql, mode)?;
    let mut guard = Guard { mode, statements_seen: 0, relations: Vec::new(), own_queries: Vec::new() };
    if let ControlFlow::Break(message) = statement.visit(&mut guard) {
        return Err(message);
    }
    let creates = match statement {
        Statement::CreateTable(t) => Some(&t.name),
        Statement::CreateSequence { name, .. } => Some(name),
        _ => None,
    };
    let own_queries = guard.own_queries;
    Ok(Checked {
        relations: guard.relations.into_iter().filter(|r| !own_queries.contains(r)).collect(),
        creates: creates.and_then(walk::relation_name),
    })
}

/// The statement kind itself: is it on the allowlist for this mode, with allowed options.
fn check_statement(statement: &Statement, sql: &str, mode: Mode<'_>) -> Result<(), String> {
    let refuse_kind = || -> Result<(), String> {
        Err(format!(
            "refused {}: {}",
            statement_kind(sql),
            match mode {
                Mode::Execute(_) => "not a statement a schema migration needs",
                Mode::Query => "only a read-only SELECT may be run as a query",
            }
        ))
    };
    let meta_table = match mode {
        Mode::Query => {
            return match statement {
                Statement::Query(_) => Ok(()),
                _ => refuse_kind(),
            };
        }
        Mode::Execute(meta_table) => meta_table,
    };
    match statement {
        Statement::Query(_) => Ok(()),
        Statement::CreateType { name, representation: Some(UserDefinedTypeRepresentation::Enum { .. }) } => {
            check_name(name, "type")
        }
        Statement::CreateType { .. } => {
            Err("refused CREATE TYPE: only enum types (CREATE TYPE … AS ENUM) may be created".into())
        }
        Statement::CreateTable(t) => {
            let extra = if t.query.is_some() {
                Some("AS (a query)")
            } else if t.like.is_some() {
                Some("LIKE")
            } else if t.clone.is_some() {
                Some("CLONE")
            } else if t.inherits.is_some() {
                Some("INHERITS")
            } else if t.partition_of.is_some() {
                Some("PARTITION OF")
            } else {
                None
            };
            if let Some(extra) = extra {
                return Err(format!("refused CREATE TABLE … {extra}: only plain table definitions may be created"));
            }
            check_name(&t.name, "table")
        }
        Statement::CreateSequence { name, .. } => check_name(name, "sequence"),
        Statement::AlterTable(a) => {
            check_name(&a.name, "table")?;
            if a.table_type.is_some() {
                return refuse_kind();
            }
            for op in &a.operations {
                match op {
                    AlterTableOperation::AlterColumn { op: AlterColumnOperation::SetDefault { .. }, .. } => {}
                    AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
                        TableConstraint::PrimaryKey(_)
                        | TableConstraint::Unique(_)
                        | TableConstraint::ForeignKey(_) => {}
                        other => {
                            return Err(format!(
                                "refused ALTER TABLE … ADD {}: only primary keys, unique and foreign keys may be added",
                                first_words(&other.to_string(), 4)
                            ));
                        }
                    },
                    other => {
                        return Err(format!(
                            "refused ALTER TABLE … {}: only ALTER COLUMN … SET DEFAULT and ADD CONSTRAINT are allowed",
                            first_words(&other.to_string(), 3)
                        ));
                    }
                }
            }
            Ok(())
        }
        Statement::CreateIndex(i) => {
            check_name(&i.table_name, "table")?;
            if let Some(name) = &i.name {
                check_name(name, "index")?;
            }
            match &i.using {
                None | Some(IndexType::BTree) | Some(IndexType::GIN) | Some(IndexType::Hash) => Ok(()),
                Some(other) => Err(format!(
                    "refused CREATE INDEX … USING {other}: only btree, hash and gin indexes may be created"
                )),
            }
        }
        Statement::Comment { object_type, object_name, .. } => match object_type {
            CommentObject::Table => check_name(object_name, "table"),
            CommentObject::Column => {
                let parts = &object_name.0;
                if parts.len() < 2 {
                    return Err(format!("refused COMMENT ON COLUMN {object_name}: name the table"));
                }
                check_name(&ObjectName(parts[..parts.len() - 1].to_vec()), "table")
            }
            other => Err(format!("refused COMMENT ON {other}: only tables and columns may be commented on")),
        },
        Statement::Drop { object_type, names, temporary, purge, table, .. } => {
            let what = match object_type {
                ObjectType::Table => "table",
                ObjectType::Type => "type",
                ObjectType::Sequence => "sequence",
                ObjectType::Index => "index",
                _ => return refuse_kind(),
            };
            if *temporary || *purge || table.is_some() {
                return refuse_kind();
            }
            names.iter().try_for_each(|n| check_name(n, what))
        }
        Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => Ok(()),
        Statement::Rollback { savepoint: Some(_), chain: false } => Ok(()),
        Statement::Rollback { .. } => {
            Err("refused ROLLBACK: the host owns the transaction (only ROLLBACK TO SAVEPOINT is allowed)".into())
        }
        Statement::Insert(ins) => {
            let table = match &ins.table {
                TableObject::TableName(name) => name,
                TableObject::TableFunction(f) => {
                    return Err(format!("refused INSERT INTO FUNCTION {}", f.name));
                }
                TableObject::TableQuery(_) => {
                    return Err("refused INSERT INTO (a query)".into());
                }
            };
            let is_meta = match table.0.as_slice() {
                [ObjectNamePart::Identifier(t)] => t.value == meta_table,
                [ObjectNamePart::Identifier(s), ObjectNamePart::Identifier(t)] => is_public(s) && t.value == meta_table,
                _ => false,
            };
            if !is_meta {
                return Err(format!("refused INSERT INTO {table}: only \"{meta_table}\" may be inserted into"));
            }
            let columns_ok = matches!(ins.columns.as_slice(),
                [ObjectName(parts)] if matches!(parts.as_slice(),
                    [ObjectNamePart::Identifier(c)] if c.value.eq_ignore_ascii_case("name")));
            if !columns_ok {
                return Err(format!("refused INSERT INTO {table}: only the column list (name) is allowed"));
            }
            if ins.or.is_some()
                || ins.ignore
                || ins.replace_into
                || ins.overwrite
                || ins.on.is_some()
                || ins.returning.is_some()
                || ins.output.is_some()
                || !ins.assignments.is_empty()
                || ins.table_alias.is_some()
            {
                return Err(format!("refused INSERT INTO {table}: only INSERT … (name) VALUES ('…'), … is allowed"));
            }
            let values_only =
                ins.source.as_deref().is_some_and(|q| {
                    q.with.is_none()
                        && q.order_by.is_none()
                        && q.limit_clause.is_none()
                        && match q.body.as_ref() {
                            SetExpr::Values(v) => v.rows.iter().flat_map(|r| &r.content).all(
                                |e| matches!(e, Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_))),
                            ),
                            _ => false,
                        }
                });
            if !values_only {
                return Err(format!("refused INSERT INTO {table}: only VALUES lists of string literals are allowed"));
            }
            Ok(())
        }
        _ => refuse_kind(),
    }
}
