// The WIT 1.3 `accounting` export every component built against the current WIT must have: each
// source table copied into its namesake, except the meta table, as the bundled component declares
// it. Included by `bindings.rs` (and by `wit-v2`, which has bindings of its own); needs the
// crate's `Component`.

impl exports::blocklet::migrate::accounting::Guest for Component {
    fn feeds(
        _db: exports::blocklet::migrate::migrator::PlannedDatabase,
        source_tables: Vec<String>,
    ) -> Vec<exports::blocklet::migrate::accounting::TableFeed> {
        use exports::blocklet::migrate::accounting::{Destination, TableFeed};
        source_tables
            .into_iter()
            .map(|table| TableFeed {
                destination: if table == "SequelizeMeta" {
                    Destination::NotCopied("written afresh".into())
                } else {
                    Destination::CopiedTo(table.clone())
                },
                source_table: table,
            })
            .collect()
    }
}
