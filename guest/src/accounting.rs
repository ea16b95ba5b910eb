//! Where each source table's rows go (WIT `accounting`), so that the host can account for
//! every row before it commits. Blocklet Server keeps the same table names in SQLite and
//! PostgreSQL, so every table is copied into its namesake, except the meta table, which the
//! component writes afresh from its own list of the schema migrations it reproduced.

use crate::catalog::META_TABLE;

/// What happens to one source table's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    CopiedTo(String),
    NotCopied(String),
}

/// The destination of each of `source_tables`, in their order.
pub fn feeds(source_tables: &[String]) -> Vec<(String, Destination)> {
    source_tables
        .iter()
        .map(|table| {
            let destination = if table == META_TABLE {
                Destination::NotCopied(format!(
                    "{META_TABLE} is written afresh: it lists the schema migrations the target's schema reproduces"
                ))
            } else {
                Destination::CopiedTo(table.clone())
            };
            (table.clone(), destination)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_copied_into_its_namesake_but_the_meta_table() {
        let tables = vec!["users".to_string(), META_TABLE.to_string(), "blocklets".to_string()];
        let feeds = feeds(&tables);
        assert_eq!(feeds.len(), 3);
        assert_eq!(feeds[0], ("users".into(), Destination::CopiedTo("users".into())));
        assert!(matches!(&feeds[1].1, Destination::NotCopied(why) if why.contains(META_TABLE)));
        assert_eq!(feeds[2], ("blocklets".into(), Destination::CopiedTo("blocklets".into())));
    }
}
