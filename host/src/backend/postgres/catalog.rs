//! What PostgreSQL's catalogs say about the tables of schema `public`: one table's columns, or
//! every table's at once (for a read-only snapshot, whose catalog does not change).

use crate::backend::quote;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use std::collections::HashMap;

/// A column of a target table with what encoding and decoding need.
#[derive(Clone, Debug)]
pub struct PgColumn {
    pub name: String,
    pub type_name: String,
    pub is_enum: bool,
    pub declared: String,
    pub not_null: bool,
    pub default: Option<String>,
    pub primary_key: u32,
}

/// What a column lookup selects (read by [`pg_column`]), and from which catalogs; the two
/// lookups below differ only in which relations they cover.
macro_rules! column_lookup {
    () => {
        "a.attname::text, t.typname::text, t.typtype = 'e', format_type(a.atttypid, a.atttypmod), \
         a.attnotnull, pg_get_expr(d.adbin, d.adrelid), \
         COALESCE((SELECT array_position(i.indkey::int2[], a.attnum) FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary), 0) \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    };
}

/// The columns of relation `$1` (`public."name"`).
const COLUMNS_SQL: &str = concat!(
    "SELECT ",
    column_lookup!(),
    " WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
);

/// Every column of every table of schema `public`, each row led by its table's name.
const ALL_COLUMNS_SQL: &str = concat!(
    "SELECT c.relname::text, ",
    column_lookup!(),
    " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY c.relname, a.attnum"
);

/// Every relation (table, view, materialized view, foreign table) of every schema but
/// PostgreSQL's own, as (schema, name).
pub(super) const RELATIONS_SQL: &str = "SELECT n.nspname::text, c.relname::text FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
     AND n.nspname NOT LIKE 'pg\\_temp\\_%' ORDER BY 1, 2";

/// One row of [`COLUMNS_SQL`], or of [`ALL_COLUMNS_SQL`] from column `at` on.
fn pg_column(r: &PgRow, at: usize) -> Result<PgColumn, sqlx::Error> {
    Ok(PgColumn {
        name: r.try_get(at)?,
        type_name: r.try_get(at + 1)?,
        is_enum: r.try_get(at + 2)?,
        declared: r.try_get(at + 3)?,
        not_null: r.try_get(at + 4)?,
        default: r.try_get(at + 5)?,
        primary_key: r.try_get::<i32, _>(at + 6)? as u32,
    })
}

/// The columns of `table` of schema `public`, in order (none when there is no such table).
pub(super) async fn table_columns(conn: &mut PgConnection, table: &str) -> Result<Vec<PgColumn>, sqlx::Error> {
    let rows = sqlx::query(COLUMNS_SQL).bind(format!("public.{}", quote(table))).fetch_all(conn).await?;
    rows.iter().map(|r| pg_column(r, 0)).collect()
}

/// Every column of every table of schema `public`, by table.
pub(super) async fn all_columns(conn: &mut PgConnection) -> Result<HashMap<String, Vec<PgColumn>>, sqlx::Error> {
    let mut tables: HashMap<String, Vec<PgColumn>> = HashMap::new();
    for r in sqlx::query(ALL_COLUMNS_SQL).fetch_all(conn).await? {
        tables.entry(r.try_get(0)?).or_default().push(pg_column(&r, 1)?);
    }
    Ok(tables)
}
