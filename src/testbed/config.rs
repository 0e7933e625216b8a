//! The proxy configuration of a bed: a generated base (the bed's credential API, cluster
//! and CA, a private state directory) with TOML fragments merged over it.

use super::BedError;
use std::path::Path;
use toml::{Table, Value};

/// The settings every bed's proxy needs: listen on a random loopback port, the emulator
/// as the AWS endpoint, the clusters (identifier, CA) and a state directory beside the
/// first cluster (the local CA never lands in the user's home). One cluster is a
/// `[cluster]` table; several are `[[cluster]]` entries named after their identifiers.
pub(crate) fn base_toml(endpoint_url: &str, clusters: &[(&str, &Path)]) -> Table {
    let state = clusters
        .first()
        .map(|(_, ca)| ca.with_file_name("proxy-state").display().to_string())
        .unwrap_or_default();
    let cluster = |id: &str, ca: &Path| {
        let mut t = Table::new();
        if clusters.len() > 1 {
            t.insert("name".into(), id.into());
        }
        t.insert("identifier".into(), id.into());
        t.insert("sslrootcert".into(), ca.display().to_string().into());
        Value::Table(t)
    };
    let mut base = Table::new();
    base.insert("listen".into(), "127.0.0.1:0".into());
    base.insert(
        "aws".into(),
        table([
            ("region", "us-east-1".into()),
            ("endpoint_url", endpoint_url.into()),
        ]),
    );
    let value = match clusters {
        [(id, ca)] => cluster(id, ca),
        _ => Value::Array(clusters.iter().map(|(id, ca)| cluster(id, ca)).collect()),
    };
    base.insert("cluster".into(), value);
    base.insert("client_tls".into(), table([("state_dir", state.into())]));
    base
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// Merges the TOML `fragment` into `into`: tables merge key by key, everything else
/// (values, arrays such as `[[users]]`) replaces.
pub fn merge_toml(into: &mut Table, fragment: &str) -> Result<(), BedError> {
    let over: Table = fragment
        .parse()
        .map_err(|e| BedError::new("parse a proxy config fragment", e))?;
    merge(into, over);
    Ok(())
}

fn merge(into: &mut Table, over: Table) {
    for (key, value) in over {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(mine)), Value::Table(theirs)) => merge(mine, theirs),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}
