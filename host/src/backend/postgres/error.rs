//! sqlx errors as the WIT's `db-error`, keeping PostgreSQL's SQLSTATE and detail.

use crate::wit::{DbError, ErrorKind};

/// Turn a sqlx error into the WIT error, keeping the SQLSTATE.
pub fn pg_error(context: &str, e: sqlx::Error) -> DbError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string());
            let kind = match code.as_deref() {
                Some(c) if c.starts_with("23") => ErrorKind::Constraint,
                Some("42P01" | "3D000" | "42704") => ErrorKind::NotFound,
                Some("42501") => ErrorKind::Denied,
                Some(c) if c.starts_with("22") => ErrorKind::InvalidInput,
                _ => ErrorKind::Other,
            };
            let mut message = format!("{context}: {}", db.message());
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                && let Some(detail) = pg.detail()
            {
                message += &format!(" ({detail})");
            }
            DbError { kind, message, code }
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut => {
            DbError::new(ErrorKind::Connection, format!("{context}: {e}"))
        }
        _ => DbError::new(ErrorKind::Other, format!("{context}: {e}")),
    }
}
