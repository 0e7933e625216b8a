//! The bed a differential run needs: a trust line for the oracle's private sessions, a
//! pool mode and size, two databases with a schema and table per client (one database for
//! each side, so the two sides of a client never share rows), and the identities' login
//! roles minted.

use super::script::{schema_of, Flavor, Identity};
use super::DiffError;
use crate::cluster::upstream::UpstreamTarget;
use crate::config::{PoolMode, SslMode};
use crate::testbed::{Bed, BedOptions};
use std::time::Duration;

/// The database of each side: the first side (the proxy) and the second (the oracle).
pub const DATABASES: [&str; 2] = ["differential_a", "differential_b"];

/// The pg_hba line that lets the oracle log in without TLS or password from loopback. The
/// proxy always uses TLS, which this `hostnossl` line never matches.
pub const ORACLE_HBA: &str = "hostnossl all all 127.0.0.1/32 trust";

/// The default test bed plus the oracle's trust line, with the proxy in `mode` with pools
/// of `pool_size`, and optionally the Redshift-like front before the cluster.
pub fn bed_options(mode: PoolMode, pool_size: usize, redshift_front: bool) -> BedOptions {
    let mut opts = BedOptions {
        redshift_front,
        tweak: Box::new(move |c| {
            c.pool.mode = mode;
            c.pool.size = pool_size;
        }),
        ..BedOptions::default()
    };
    opts.hba_extra.push(ORACLE_HBA.into());
    opts
}

/// Which statements the bed's server accepts.
pub fn flavor_of(bed: &Bed) -> Flavor {
    if bed.front.is_some() {
        Flavor::RedshiftFront
    } else {
        Flavor::Postgres
    }
}

/// Creates both databases (once) and logs each identity in through the proxy once, so the
/// emulator has made its login role (`IAM:alice`) and minted a password.
pub async fn prepare(bed: &Bed) -> Result<(), DiffError> {
    let admin = bed
        .pg
        .admin()
        .await
        .map_err(|e| DiffError::new("connect to PostgreSQL as admin", e))?;
    for db in DATABASES {
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await
            .map_err(|e| DiffError::new("look up the run's databases", e))?;
        if exists.is_none() {
            admin
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await
                .map_err(|e| DiffError::new(format!("create database {db}"), e))?;
        }
    }
    for identity in [Identity::Alice, Identity::Bob] {
        let user = identity.client_user();
        let c = bed
            .connect(user)
            .await
            .map_err(|e| DiffError::new(format!("log in through the proxy as {user}"), e))?;
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| DiffError::new(format!("first query through the proxy as {user}"), e))?;
    }
    Ok(())
}

/// Gives each of `clients` its schema `cN` with table `t` holding rows 1..=N+3, afresh, in
/// both databases.
pub async fn reset_tables(bed: &Bed, clients: &[usize]) -> Result<(), DiffError> {
    let mut sql = String::new();
    for &c in clients {
        let s = schema_of(c);
        sql.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; GRANT USAGE ON SCHEMA {s} TO PUBLIC; \
             CREATE TABLE IF NOT EXISTS {s}.t (id int, v text); GRANT ALL ON {s}.t TO PUBLIC; \
             TRUNCATE {s}.t; INSERT INTO {s}.t SELECT g, 'r' || g FROM generate_series(1, {}) g;\n",
            c + 3
        ));
    }
    for db in DATABASES {
        let mut config = bed.pg.admin_config();
        config.dbname(db);
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| DiffError::new(format!("connect to {db} as admin"), e))?;
        let conn = tokio::spawn(conn);
        client.batch_execute(&sql).await.map_err(|e| {
            let (code, message) = crate::testbed::db_error(&e);
            DiffError::msg(format!(
                "reset the clients' tables in {db}: {code} {message}"
            ))
        })?;
        drop(client);
        let _ = conn.await;
    }
    Ok(())
}

/// TLS to the bed's Redshift-like front, verified with the cluster's CA, as the proxy
/// reaches it.
pub fn front_target(bed: &Bed) -> Result<Option<UpstreamTarget>, DiffError> {
    let Some(front) = bed.front.as_ref() else {
        return Ok(None);
    };
    let tls =
        crate::cluster::tls::upstream_config(SslMode::VerifyFull, Some(bed.pg.ca_cert_path()))
            .map_err(|e| DiffError::new("TLS configuration for the front", e))?;
    let server_name = crate::cluster::tls::server_name(front.host())
        .map_err(|e| DiffError::new("the front's TLS name", e))?;
    Ok(Some(UpstreamTarget {
        host: front.host().into(),
        port: front.port(),
        tls,
        server_name,
        connect_timeout: Duration::from_secs(10),
    }))
}
