//! Several targets in one proxy: two real clusters, picked by database name or by listener.

use local_cluster::{LocalPg, LocalPgOptions};
use redshift_emulator::{AccessKey, EmulatedCluster, Emulator, EmulatorConfig};
use redshift_iam_proxy::config::Config;
use redshift_iam_proxy::credentials::AwsIdentitySource;
use redshift_iam_proxy::server::Proxy;
use redshift_iam_proxy::testbed::{db_error, init_tracing, ACCESS_KEY, SECRET_KEY};

async fn cluster_with_bob() -> LocalPg {
    let pg = LocalPg::start(LocalPgOptions::default()).await.unwrap();
    let admin = pg.admin().await.unwrap();
    admin.batch_execute("CREATE ROLE bob").await.unwrap();
    admin.batch_execute("CREATE DATABASE dev").await.unwrap();
    pg
}

async fn server_port(
    addr: std::net::SocketAddr,
    database: &str,
) -> Result<(i32, String), tokio_postgres::Error> {
    let info = format!(
        "host=127.0.0.1 port={} user=bob dbname={database}",
        addr.port()
    );
    let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let row = c
        .query_one("SELECT inet_server_port(), current_database()::text", &[])
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn two_targets_in_one_proxy_by_database_name_and_by_listener() {
    init_tracing();
    let (east, west) = (cluster_with_bob().await, cluster_with_bob().await);
    let cluster = EmulatedCluster::local;
    let emu = Emulator::start(
        EmulatorConfig {
            keys: vec![AccessKey::new(ACCESS_KEY, SECRET_KEY)],
            clusters: vec![cluster("east", &east), cluster("west", &west)],
            ..EmulatorConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let config = Config::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        [aws]
        region = "us-east-1"
        endpoint_url = "{url}"
        [[cluster]]
        name = "east"
        identifier = "east"
        sslrootcert = "{east_ca}"
        [[cluster]]
        name = "west"
        identifier = "west"
        sslrootcert = "{west_ca}"
        default_database = "postgres"
        listen = "127.0.0.1:0"
        [client_tls]
        state_dir = "{state}"
        [[users]]
        client_user = "*"
        "#,
        url = emu.endpoint_url(),
        state = east.ca_cert_path().with_file_name("proxy-state").display(),
        east_ca = east.ca_cert_path().display(),
        west_ca = west.ca_cert_path().display(),
    ))
    .unwrap();
    let creds = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
    let proxy = Proxy::bind(config, AwsIdentitySource::Static(creds))
        .await
        .unwrap();
    let addrs = proxy.listener_addrs();
    let main = addrs.iter().find(|(t, _)| t.is_none()).unwrap().1;
    let west_only = addrs
        .iter()
        .find(|(t, _)| t.as_deref() == Some("west"))
        .unwrap()
        .1;
    tokio::spawn(proxy.serve(std::future::pending()));

    // "target/dbname"; a repeated login is served from the cache.
    assert_eq!(
        server_port(main, "east/postgres").await.unwrap(),
        (east.port() as i32, "postgres".into())
    );
    assert_eq!(
        server_port(main, "east/postgres").await.unwrap().0,
        east.port() as i32
    );
    assert_eq!(emu.call_count("GetClusterCredentials"), 1);
    // "target" alone: the target's default database, else "dev".
    assert_eq!(
        server_port(main, "east").await.unwrap(),
        (east.port() as i32, "dev".into())
    );
    assert_eq!(
        server_port(main, "west").await.unwrap(),
        (west.port() as i32, "postgres".into())
    );
    // A target's own listener: the database is the DbName as is.
    assert_eq!(
        server_port(west_only, "dev").await.unwrap(),
        (west.port() as i32, "dev".into())
    );
    // Each (target, database) is its own credential.
    assert_eq!(emu.call_count("GetClusterCredentials"), 4);

    let err = server_port(main, "north").await.unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, "3D000");
    assert!(msg.contains("east, west"), "{msg}");
}
