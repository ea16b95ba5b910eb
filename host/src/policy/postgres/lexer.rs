//! Statement text seen the way PostgreSQL's own lexer sees it: where statements end (quotes,
//! `E''` strings, dollar quotes, nested comments), and the leading keywords that name a
//! statement's kind in messages. Independent of the parser, so that a parser that disagrees
//! with the server about where a statement ends cannot let a second one through.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// The statement's leading keywords, upper-cased, for messages: `COPY`, `ALTER SYSTEM`,
/// `CREATE EXTENSION`, `CREATE OR REPLACE FUNCTION`, `SET SESSION AUTHORIZATION`.
pub(super) fn statement_kind(sql: &str) -> String {
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
pub(super) fn leading_words(sql: &str, n: usize) -> String {
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
pub(super) fn first_words(s: &str, n: usize) -> String {
    s.split_whitespace().take(n).collect::<Vec<_>>().join(" ")
}

/// Split the text the way PostgreSQL's lexer does and refuse more than one statement, under
/// both settings of `standard_conforming_strings`.
pub(super) fn pg_lexer_single_statement(sql: &str) -> Result<(), String> {
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
pub(super) fn pg_lexer_statements(sql: &str, standard_strings: bool) -> Result<usize, String> {
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
