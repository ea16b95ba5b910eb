//! The walk over a parsed statement: every nested statement, query, relation, `FROM` item and
//! function call is checked against the allowlist, and names must be objects of schema
//! `public` (never `pg_*`).

use super::Mode;
use super::lexer::first_words;
use super::{PURE_FUNCTIONS, SEQUENCE_FUNCTIONS};
use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, Select,
    SetExpr, Statement, TableFactor, Value, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token, Tokenizer};
use std::ops::ControlFlow;

/// Walks every node of the statement: nested statements, queries, selects, relations,
/// `FROM` items and function calls.
pub(super) struct Guard<'a> {
    pub(super) mode: Mode<'a>,
    pub(super) statements_seen: usize,
    /// Every relation named, as [`relation_name`] gives it.
    pub(super) relations: Vec<String>,
    /// The names of the statement's own `WITH` queries.
    pub(super) own_queries: Vec<String>,
}

/// The name PostgreSQL resolves a relation of schema `public` to: its last part, folded to lower
/// case unless quoted.
pub(super) fn relation_name(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(id) => Some(folded(id)),
        ObjectNamePart::Function(_) => None,
    }
}

fn folded(id: &Ident) -> String {
    if id.quote_style.is_some() { id.value.clone() } else { id.value.to_lowercase() }
}

impl Visitor for Guard<'_> {
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
                self.own_queries.push(folded(&cte.alias.name));
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
            Ok(()) => {
                self.relations.extend(relation_name(relation));
                ControlFlow::Continue(())
            }
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

fn check_function(f: &Function, mode: Mode<'_>) -> Result<(), String> {
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
        || (matches!(mode, Mode::Execute(_)) && SEQUENCE_FUNCTIONS.contains(&name.as_str()));
    if !allowed_here {
        let mut allowed: Vec<&str> = PURE_FUNCTIONS.to_vec();
        if matches!(mode, Mode::Execute(_)) {
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

pub(super) fn is_public(id: &Ident) -> bool {
    match id.quote_style {
        None => id.value.eq_ignore_ascii_case("public"),
        Some(_) => id.value == "public",
    }
}

/// An object a component may name: `name` or `public.name`, never a system object.
pub(super) fn check_name(name: &ObjectName, what: &str) -> Result<(), String> {
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
pub(super) fn check_alter_sequence_owned_by(sql: &str) -> Result<(), String> {
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
