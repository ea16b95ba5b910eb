// The WIT 1.3 `conventions` export every component built against the current WIT must have:
// Blocklet Server 1.17's, as the bundled component states them. Included by `bindings.rs` (and by
// `wit-v2`, which has bindings of its own); needs the crate's `Component`.

impl exports::blocklet::migrate::conventions::Guest for Component {
    fn get() -> exports::blocklet::migrate::conventions::ServerConventions {
        use exports::blocklet::migrate::conventions::{DataDirMarker, ServerConventions};
        use exports::blocklet::migrate::migrator::DatabaseKind;
        let marker = |directory: &str, config_file: &str| DataDirMarker {
            directory: directory.into(),
            config_file: config_file.into(),
        };
        ServerConventions {
            data_dir_markers: vec![marker(".blocklet-server", "config.yml"), marker(".abtnode", "abtnode.yml")],
            lock_file: "core/sqlite-to-postgres.lock".into(),
            index_database: "server_db".into(),
            meta_table: "SequelizeMeta".into(),
            kind_labels: vec![
                (DatabaseKind::Server, "Server".into()),
                (DatabaseKind::Service, "Service".into()),
                (DatabaseKind::Blocklet, "Blocklet".into()),
                (DatabaseKind::CertificateManager, "certificate-manager".into()),
            ],
        }
    }
}
