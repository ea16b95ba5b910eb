//! Generates `wit/blocklet-migrate.wit`: a copy of the real contract (`../../../wit`) with the
//! package moved to the next major version, `blocklet:migrate@2.0.0`. A host implementing 1.x
//! must refuse the component built from it, naming both versions.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let source = manifest.join("../../../wit/blocklet-migrate.wit");
    println!("cargo:rerun-if-changed={}", source.display());
    let wit = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
    let mut moved = 0;
    let v2: String = wit
        .lines()
        .map(|line| match line.trim().strip_prefix("package blocklet:migrate@") {
            Some(_) => {
                moved += 1;
                "package blocklet:migrate@2.0.0;".to_string()
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(moved, 1, "{} has no `package blocklet:migrate@…;` line", source.display());
    let dir = manifest.join("wit");
    let dest = dir.join("blocklet-migrate.wit");
    // Written only when it changes, so the crate is not rebuilt every time.
    if std::fs::read_to_string(&dest).ok().as_deref() != Some(v2.as_str()) {
        std::fs::create_dir_all(&dir).expect("create wit/");
        std::fs::write(&dest, v2).unwrap_or_else(|e| panic!("write {}: {e}", dest.display()));
    }
}
