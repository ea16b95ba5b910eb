//! Which components this host runs: those built against the same major version of the WIT
//! package and a minor version no newer than the host's, down to the oldest minor whose
//! records have today's shape. Checked on the component's exports before it is instantiated,
//! so the refusal names both versions instead of a missing function.

use anyhow::bail;

/// The WIT package version this host implements (`wit/blocklet-migrate.wit`).
pub const HOST_WIT_VERSION: &str = "1.3.0";

/// The oldest minor version of the WIT package whose components this host runs: 1.1 exports
/// what 1.2 and 1.3 need (1.2 added an import, 1.3 an optional export), while 1.0's records
/// had another shape.
const OLDEST_WIT_MINOR: u64 = 1;

/// Refuse a component built for another major version of the WIT package, or for a newer
/// minor one than this host implements, naming both versions.
pub fn check_wit_version(exports: &[String]) -> anyhow::Result<()> {
    let host: Vec<u64> = HOST_WIT_VERSION.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    for name in exports {
        let Some(version) = name.strip_prefix("blocklet:migrate/migrator@") else { continue };
        let v: Vec<u64> = version.split(['.', '-', '+']).take(3).map(|p| p.parse().unwrap_or(0)).collect();
        if v.len() < 2 || v[0] != host[0] || v[1] > host[1] {
            bail!(
                "the component was built for blocklet:migrate@{version}, but this host implements blocklet:migrate@{HOST_WIT_VERSION}: \
                 it needs the same major version and a minor version no newer than the host's"
            );
        }
        if v[1] < OLDEST_WIT_MINOR {
            bail!(
                "the component was built for blocklet:migrate@{version}; this host implements blocklet:migrate@{HOST_WIT_VERSION} \
                 and runs components of 1.{OLDEST_WIT_MINOR} or newer (1.0 records had another shape; rebuild the component \
                 against the current WIT)"
            );
        }
        return Ok(());
    }
    bail!("the file is not a blocklet-migrate component: it exports no blocklet:migrate/migrator interface")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_versions_this_host_runs() {
        let check = |v: &str| check_wit_version(&[format!("blocklet:migrate/migrator@{v}")]);
        for ok in ["1.1.0", "1.2.0", "1.2.1", "1.3.0"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for refused in ["1.0.0", "1.4.0", "2.0.0", "0.9.0"] {
            let e = check(refused).unwrap_err().to_string();
            assert!(e.contains(refused) && e.contains(HOST_WIT_VERSION), "{refused}: {e}");
        }
        assert!(check_wit_version(&["wasi:cli/run@0.2.0".into()]).is_err());
    }
}
