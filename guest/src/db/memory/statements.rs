//! What each statement the flow sends does to a [`MemoryDatabase`]: DDL goes through the
//! crate's own schema parsers; every other statement is reduced to its shape (keywords kept,
//! names and values lifted out as parameters) and evaluated when the shape is one the flow
//! sends. Anything else fails as invalid input naming the statement.

use super::{Engine, MemoryDatabase, Sequence, State, Stored, Table, error, not_understood};
use crate::batch::{Batch, Column, Value};
use crate::convert::type_name;
use crate::db::{ColumnInfo, DbError, ErrorKind};
use crate::ddl::{PgSchema, unqualify};
use crate::sqlite_ddl::SqliteSchema;

impl MemoryDatabase {
    /// Run one statement: DDL through the engine's schema parser, the rest by its shape.
    pub(super) fn run(&self, statement: &str) -> Result<u64, DbError> {
        self.state.borrow_mut().statements.push(statement.to_string());
        let words: Vec<&str> = statement.split_whitespace().take(3).collect();
        match (self.engine, words.as_slice()) {
            (_, ["CREATE", "TABLE", ..]) => self.create_table(statement),
            (Engine::Postgres, ["CREATE", "TYPE", ..]) => {
                let schema = PgSchema::parse(statement).map_err(|e| error(ErrorKind::InvalidInput, e))?;
                self.state.borrow_mut().types.extend(schema.enums.into_keys());
                Ok(0)
            }
            (Engine::Postgres, ["CREATE", "SEQUENCE", name]) => {
                self.state.borrow_mut().sequences.insert(unqualify(name), Sequence { last_value: 1, is_called: false });
                Ok(0)
            }
            (Engine::Postgres, ["ALTER", "SEQUENCE" | "TABLE", ..] | ["COMMENT", "ON", ..])
            | (_, ["CREATE", "INDEX" | "UNIQUE", ..])
            | (_, ["SAVEPOINT" | "RELEASE" | "ROLLBACK", ..]) => Ok(0),
            (Engine::Sqlite, ["ANALYZE"]) => {
                self.state
                    .borrow_mut()
                    .tables
                    .entry("sqlite_stat1".into())
                    .or_insert_with(|| untyped_table(&["tbl", "idx", "stat"]));
                Ok(0)
            }
            _ => self.run_shape(statement),
        }
    }

    fn create_table(&self, statement: &str) -> Result<u64, DbError> {
        let invalid = |e: String| error(ErrorKind::InvalidInput, e);
        let (name, columns, autoincrement) = match self.engine {
            Engine::Postgres => {
                let schema = PgSchema::parse(statement).map_err(invalid)?;
                let [table] = schema.tables.as_slice() else { return Err(not_understood(statement)) };
                let columns = table
                    .columns
                    .iter()
                    .map(|c| ColumnInfo {
                        name: c.name.clone(),
                        declared_type: type_name(&c.ty),
                        not_null: c.not_null,
                        default_value: c.default.clone(),
                        primary_key: 0,
                    })
                    .collect();
                (table.name.clone(), columns, false)
            }
            Engine::Sqlite => {
                let schema = SqliteSchema::parse(statement).map_err(invalid)?;
                let [table] = schema.tables.as_slice() else { return Err(not_understood(statement)) };
                let columns = table
                    .columns
                    .iter()
                    .map(|(name, declared)| ColumnInfo {
                        name: name.clone(),
                        declared_type: declared.clone(),
                        not_null: false,
                        default_value: None,
                        primary_key: 0,
                    })
                    .collect();
                (table.name.clone(), columns, table.autoincrement.is_some())
            }
        };
        let mut state = self.state.borrow_mut();
        if state.tables.contains_key(&name) {
            return Err(error(ErrorKind::Other, format!("table {name} already exists")));
        }
        state.tables.insert(name, Table { columns, rows: Vec::new() });
        if autoincrement {
            // As SQLite does for the first AUTOINCREMENT table.
            state.tables.entry("sqlite_sequence".into()).or_insert_with(|| untyped_table(&["name", "seq"]));
        }
        Ok(0)
    }

    /// The non-DDL statements the flow sends, recognised by shape (see [`shape`]).
    fn run_shape(&self, statement: &str) -> Result<u64, DbError> {
        let (shape, params) = shape(statement).ok_or_else(|| not_understood(statement))?;
        let mut state = self.state.borrow_mut();
        match (self.engine, shape.as_str(), params.as_slice()) {
            (Engine::Postgres, "DROP TABLE IF EXISTS public . ? CASCADE", [Token::Ident(t)]) => {
                Ok(state.tables.remove(t).map_or(0, |_| 1))
            }
            (Engine::Postgres, "DROP TYPE IF EXISTS public . ? CASCADE", [Token::Ident(t)]) => {
                state.types.retain(|x| x != t);
                Ok(0)
            }
            (Engine::Postgres, "DROP SEQUENCE IF EXISTS public . ? CASCADE", [Token::Ident(s)]) => {
                state.sequences.remove(s);
                Ok(0)
            }
            (
                Engine::Postgres,
                "SELECT setval ( ? , GREATEST ( COALESCE ( ( SELECT max ( ? ) FROM public . ? ) , ? ) , ? ) + ? , false )",
                [
                    Token::Text(seq),
                    Token::Ident(column),
                    Token::Ident(table),
                    Token::Number(empty),
                    Token::Number(floor),
                    Token::Number(step),
                ],
            ) => {
                let t = state.table(table)?;
                let i = t.position(table, column)?;
                let max =
                    t.rows.iter().filter_map(|r| if let Stored::Integer(n) = r[i] { Some(n) } else { None }).max();
                let value = max.unwrap_or(*empty).max(*floor) + step;
                let seq = unqualify(seq);
                let sequence = state
                    .sequences
                    .get_mut(&seq)
                    .ok_or_else(|| error(ErrorKind::NotFound, format!("no such sequence: {seq}")))?;
                *sequence = Sequence { last_value: value, is_called: false };
                Ok(1)
            }
            (
                Engine::Sqlite,
                "UPDATE sqlite_sequence SET seq = max ( seq , ? ) WHERE name = ?",
                [Token::Number(used), Token::Text(name)],
            ) => {
                let t = state.table_mut("sqlite_sequence")?;
                let mut updated = 0;
                for row in t.rows.iter_mut().filter(|r| r[0] == Stored::text(name)) {
                    let seq = if let Stored::Integer(n) = row[1] { n.max(*used) } else { *used };
                    row[1] = Stored::Integer(seq);
                    updated += 1;
                }
                Ok(updated)
            }
            (
                Engine::Sqlite,
                "INSERT INTO sqlite_sequence ( name , seq ) SELECT ? , ? WHERE NOT EXISTS ( SELECT ? FROM sqlite_sequence WHERE name = ? )",
                [Token::Text(name), Token::Number(used), Token::Number(_), Token::Text(other)],
            ) if name == other => {
                let t = state.table_mut("sqlite_sequence")?;
                if t.rows.iter().any(|r| r[0] == Stored::text(name)) {
                    return Ok(0);
                }
                t.rows.push(vec![Stored::text(name), Stored::Integer(*used)]);
                Ok(1)
            }
            _ if shape.starts_with("INSERT INTO ") => {
                insert_values(&mut state, self.engine, &shape, &params).ok_or_else(|| not_understood(statement))?
            }
            _ => Err(not_understood(statement)),
        }
    }

    /// The one query the flow sends when no key is violated (keys are not enforced here): a
    /// sequence's last handed-out value.
    pub(super) fn answer(&self, statement: &str) -> Result<Batch, DbError> {
        let (shape, params) = shape(statement).ok_or_else(|| not_understood(statement))?;
        match (self.engine, shape.as_str(), params.as_slice()) {
            (
                Engine::Postgres,
                "SELECT CASE WHEN is_called THEN last_value ELSE last_value - ? END FROM public . ?",
                [Token::Number(1), Token::Ident(name)],
            ) => {
                let seq = self
                    .sequence(name)
                    .ok_or_else(|| error(ErrorKind::NotFound, format!("no such sequence: {name}")))?;
                let mut column = Column::default();
                column.push(Value::Integer(if seq.is_called { seq.last_value } else { seq.last_value - 1 }));
                Ok(Batch { rows: 1, columns: vec![column] })
            }
            _ => Err(not_understood(statement)),
        }
    }
}

fn untyped_table(columns: &[&str]) -> Table {
    let columns = columns
        .iter()
        .map(|c| ColumnInfo {
            name: c.to_string(),
            declared_type: String::new(),
            not_null: false,
            default_value: None,
            primary_key: 0,
        })
        .collect();
    Table { columns, rows: Vec::new() }
}

/// `INSERT INTO [public .] ? ( name, … ) VALUES ( ?, … ), …` with literal values; `None` for
/// any other shape.
fn insert_values(state: &mut State, engine: Engine, shape: &str, params: &[Token]) -> Option<Result<u64, DbError>> {
    let rest = shape.strip_prefix("INSERT INTO ")?;
    let rest = match (engine, rest.strip_prefix("public . ")) {
        (Engine::Postgres, Some(rest)) => rest,
        (Engine::Sqlite, None) => rest,
        _ => return None,
    };
    let (names, values) = rest.strip_prefix("? ( ")?.split_once(" ) VALUES ( ")?;
    let mut params = params.iter();
    let Some(Token::Ident(table)) = params.next() else { return None };
    let columns: Vec<String> = names
        .split(" , ")
        .map(|name| match name {
            "?" => match params.next()? {
                Token::Ident(c) => Some(c.clone()),
                _ => None,
            },
            bare => (!bare.contains(' ')).then(|| bare.to_string()),
        })
        .collect::<Option<_>>()?;
    let value_shape = vec!["?"; columns.len()].join(" , ");
    let tuples = values.strip_suffix(" )")?.split(" ) , ( ").collect::<Vec<_>>();
    let literals: Vec<&Token> = params.collect();
    if tuples.iter().any(|t| *t != value_shape) || literals.len() != columns.len() * tuples.len() {
        return None;
    }
    Some((|| {
        let t = state.table_mut(table)?;
        let at: Vec<usize> = columns.iter().map(|c| t.position(table, c)).collect::<Result<_, _>>()?;
        for row in literals.chunks(columns.len()) {
            let mut full = vec![Stored::Null; t.columns.len()];
            for (literal, &i) in row.iter().zip(&at) {
                full[i] = match literal {
                    Token::Text(s) => Stored::text(s),
                    Token::Number(n) => Stored::Integer(*n),
                    Token::Ident(_) => return Err(error(ErrorKind::InvalidInput, "an identifier as a value")),
                };
            }
            t.rows.push(full);
        }
        Ok(tuples.len() as u64)
    })())
}

/// A parameter of a statement's shape.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A quoted identifier (`"x"` or `` `x` ``), or a bare one where a name is expected.
    Ident(String),
    Text(String),
    Number(i64),
}

/// A statement with its quoted identifiers, string literals and numbers replaced by `?`, its
/// tokens separated by single spaces, and the replaced values in order. Bare words (keywords,
/// and the names the flow writes unquoted) stay in the shape. `None` for an unterminated quote.
fn shape(statement: &str) -> Option<(String, Vec<Token>)> {
    let mut words: Vec<String> = Vec::new();
    let mut params = Vec::new();
    let mut chars = statement.trim().trim_end_matches(';').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '\'' | '"' | '`' => {
                let mut text = String::new();
                loop {
                    match chars.next()? {
                        q if q == c && chars.peek() == Some(&c) => {
                            chars.next();
                            text.push(c);
                        }
                        q if q == c => break,
                        other => text.push(other),
                    }
                }
                params.push(if c == '\'' { Token::Text(text) } else { Token::Ident(text) });
                words.push("?".into());
            }
            c if c.is_ascii_digit() => {
                let mut digits = c.to_string();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    digits.push(d);
                }
                params.push(Token::Number(digits.parse().ok()?));
                words.push("?".into());
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut word = c.to_string();
                while let Some(d) = chars.next_if(|d| d.is_alphanumeric() || *d == '_') {
                    word.push(d);
                }
                words.push(word);
            }
            other => words.push(other.to_string()),
        }
    }
    Some((words.join(" "), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_keep_keywords_and_lift_names_and_values() {
        let (shape, params) = shape("INSERT INTO public.\"SequelizeMeta\" (name) VALUES ('a''b'), ('c')").unwrap();
        assert_eq!(shape, "INSERT INTO public . ? ( name ) VALUES ( ? ) , ( ? )");
        assert_eq!(
            params,
            vec![Token::Ident("SequelizeMeta".into()), Token::Text("a'b".into()), Token::Text("c".into())]
        );
        assert!(super::shape("SELECT 'open").is_none());
    }
}
