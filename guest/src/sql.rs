//! SQL text handling shared by everything that reads or writes SQL: splitting a script into
//! statements, splitting a list on its top-level commas, quoting and unquoting identifiers,
//! quoting literals.
//!
//! The splitter is a small lexer rather than a line rule, so that a `;` inside a string, a
//! quoted identifier, a dollar-quoted body or a comment never ends a statement. It keeps each
//! statement's text verbatim (a schema statement is replayed exactly as the dump has it); the
//! guest's schema parsers, the tests and the benchmarks all split with this one function.

/// Split an SQL script (PostgreSQL or SQLite) into its statements.
///
/// Each statement runs from its first significant character to its terminating `;`
/// (included); text after the last `;` that is more than whitespace and comments is returned
/// as a final statement without one. Comments and blank lines between statements are
/// dropped, and so is a psql meta-command line (`\connect`, `\restrict`, …) where a statement
/// would start; comments inside a statement are kept.
///
/// A `;` ends a statement only outside `'…'` strings (with `''`, and backslash escapes in
/// PostgreSQL's `E'…'`), `"…"`, `` `…` `` and `[…]` identifiers, `$tag$…$tag$` bodies, `--`
/// line comments and `/* … */` block comments (nested, as PostgreSQL allows).
pub fn split_statements(script: &str) -> Vec<String> {
    let bytes = script.as_bytes();
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = line_end(bytes, i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = block_comment_end(bytes, i);
                continue;
            }
            b'\\' if start.is_none() => {
                i = line_end(bytes, i);
                continue;
            }
            _ if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let begun = *start.get_or_insert(i);
        i = match b {
            b';' => {
                out.push(script[begun..=i].to_string());
                start = None;
                i + 1
            }
            b'\'' => {
                let escapes =
                    i > 0 && matches!(bytes[i - 1], b'E' | b'e') && (i == 1 || !is_identifier_byte(bytes[i - 2]));
                quoted_end(bytes, i, b'\'', escapes)
            }
            b'"' | b'`' => quoted_end(bytes, i, b, false),
            b'[' => bytes[i..].iter().position(|&c| c == b']').map_or(bytes.len(), |p| i + p + 1),
            b'$' if i == 0 || !is_identifier_byte(bytes[i - 1]) => dollar_quoted_end(bytes, i).unwrap_or(i + 1),
            _ => i + 1,
        };
    }
    if let Some(begun) = start {
        out.push(script[begun..].trim_end().to_string());
    }
    out
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The index just past the line that `i` is on (its newline included).
fn line_end(bytes: &[u8], i: usize) -> usize {
    bytes[i..].iter().position(|&c| c == b'\n').map_or(bytes.len(), |p| i + p + 1)
}

/// The index just past the block comment opening at `i`.
fn block_comment_end(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// The index just past the quoted text opening at `i` with `quote` (a doubled quote stands for
/// itself; with `escapes`, so does a backslash-escaped character).
fn quoted_end(bytes: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    i += 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            c if c == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index just past the `$tag$…$tag$` body opening at `i`, or `None` when the `$` at `i`
/// opens no dollar quote (a positional parameter such as `$1`).
fn dollar_quoted_end(bytes: &[u8], i: usize) -> Option<usize> {
    let tag_len = bytes[i + 1..].iter().position(|&c| c == b'$')?;
    let tag = &bytes[i + 1..i + 1 + tag_len];
    let valid =
        tag.first().is_none_or(|c| !c.is_ascii_digit()) && tag.iter().all(|&c| is_identifier_byte(c) && c != b'$');
    if !valid {
        return None;
    }
    let delimiter = &bytes[i..i + tag_len + 2];
    let body = i + delimiter.len();
    Some(
        bytes[body..]
            .windows(delimiter.len())
            .position(|w| w == delimiter)
            .map_or(bytes.len(), |p| body + p + delimiter.len()),
    )
}

/// Split `list` on its commas outside parentheses, quotes and backticks, each part trimmed.
pub fn split_top_level(list: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut quote) = (0i32, None::<char>);
    let mut cur = String::new();
    for ch in list.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(ch),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_string());
    }
    parts
}

/// A quoted identifier's name (`"a""b"` → `a"b`, `` `x` `` → `x`, `[x]` → `x`); other text
/// trimmed, as it is.
pub fn unquote(identifier: &str) -> String {
    let s = identifier.trim();
    for (open, close) in [('"', '"'), ('`', '`'), ('[', ']')] {
        if s.len() >= 2 && s.starts_with(open) && s.ends_with(close) {
            let inner = &s[1..s.len() - 1];
            return if open == close {
                inner.replace(&format!("{open}{open}"), &open.to_string())
            } else {
                inner.into()
            };
        }
    }
    s.to_string()
}

/// The first line of a statement, to name it in a message.
pub fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or("")
}

/// Double-quote an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Single-quote an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_at_semicolons_outside_quotes() {
        let script = "CREATE TABLE a (x text DEFAULT 'a;b', \"c;d\" int);\n\
                      INSERT INTO `t;u` VALUES ('it''s; fine'); SELECT [x;y] FROM z;";
        assert_eq!(
            split_statements(script),
            vec![
                "CREATE TABLE a (x text DEFAULT 'a;b', \"c;d\" int);",
                "INSERT INTO `t;u` VALUES ('it''s; fine');",
                "SELECT [x;y] FROM z;",
            ]
        );
    }

    #[test]
    fn escape_strings_and_standard_strings_differ_on_backslashes() {
        assert_eq!(split_statements(r"SELECT E'a\';b'; SELECT 1;"), vec![r"SELECT E'a\';b';", "SELECT 1;"]);
        // In a standard string a backslash is a character: the quote after it closes the string.
        assert_eq!(split_statements(r"SELECT 'a\'; SELECT 1;"), vec![r"SELECT 'a\';", "SELECT 1;"]);
        // `E` that ends an identifier does not make an escape string.
        assert_eq!(split_statements(r"SELECT typE'a\'; SELECT 1;"), vec![r"SELECT typE'a\';", "SELECT 1;"]);
    }

    #[test]
    fn dollar_quoted_bodies_hide_semicolons() {
        let script = "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $$ ; $body$ LANGUAGE sql;\n\
                      DO $$ BEGIN PERFORM 1; END $$;\n\
                      PREPARE p AS SELECT $1; SELECT a$b FROM t;";
        assert_eq!(
            split_statements(script),
            vec![
                "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $$ ; $body$ LANGUAGE sql;",
                "DO $$ BEGIN PERFORM 1; END $$;",
                "PREPARE p AS SELECT $1;",
                "SELECT a$b FROM t;",
            ]
        );
    }

    #[test]
    fn comments_between_statements_are_dropped_and_inside_kept() {
        let script = "--\n-- Name: t; Type: TABLE\n--\n\n\\restrict abc\nCREATE TABLE t ( -- not; the end\n  x int /* a; /* nested; */ b */\n);\n\
                      /* trailing; */\n";
        assert_eq!(
            split_statements(script),
            vec!["CREATE TABLE t ( -- not; the end\n  x int /* a; /* nested; */ b */\n);"]
        );
    }

    #[test]
    fn unterminated_text_is_a_last_statement() {
        assert_eq!(split_statements("SELECT 1; SELECT 2  \n-- done\n"), vec!["SELECT 1;", "SELECT 2  \n-- done"]);
        assert_eq!(split_statements("SELECT 'open;"), vec!["SELECT 'open;"]);
        assert!(split_statements("  -- only a comment\n").is_empty());
    }

    #[test]
    fn every_embedded_schema_splits_into_whole_statements() {
        for (file, text, statements) in [
            ("pg-server_db.sql", include_str!("../schema/blocklet-1.17.12/pg-server_db.sql"), 198),
            ("sqlite-server.sql", include_str!("../schema/blocklet-1.17.12/sqlite-server.sql"), 122),
        ] {
            let split = split_statements(text);
            assert_eq!(split.len(), statements, "{file}");
            assert!(split.iter().all(|s| s.ends_with(';') && !s.starts_with("--")), "{file}");
        }
    }

    #[test]
    fn commas_split_outside_parentheses_and_quotes() {
        assert_eq!(
            split_top_level("a int, b numeric(10, 2) DEFAULT 'x,y', `c,d` text, \"e,f\""),
            vec!["a int", "b numeric(10, 2) DEFAULT 'x,y'", "`c,d` text", "\"e,f\""]
        );
    }

    #[test]
    fn quoting_doubles_the_quote() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(unquote(&quote_ident("a\"b")), "a\"b");
        assert_eq!([unquote(" `x``y` "), unquote("[z]"), unquote("plain")], ["x`y", "z", "plain"]);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(first_line("a\nb"), "a");
    }
}
