//! Several targets in one proxy: two real clusters, picked by database name or by listener.

use redshift_iam_proxy::testbed::{connect, db_error, Bed, BedOptions};

async fn server_port(
    addr: std::net::SocketAddr,
    database: &str,
) -> Result<(i32, String), tokio_postgres::Error> {
    let info = format!(
        "host=127.0.0.1 port={} user=bob dbname={database}",
        addr.port()
    );
    let c = connect(&info).await?;
    let row = c
        .query_one("SELECT inet_server_port(), current_database()::text", &[])
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn a_login_reaches_the_target_named_by_its_database_or_by_its_listener() {
    // Two clusters, east and west, each with bob and a `dev` database; west has its own
    // listener and `postgres` as its default database.
    let bed = Bed::with(BedOptions {
        cluster: "east".into(),
        more_clusters: vec!["west".into()],
        setup_sql: "CREATE ROLE bob".into(),
        users_toml: "[[users]]\nclient_user = \"*\"".into(),
        tweak: Box::new(|c| {
            c.cluster[1].default_database = Some("postgres".into());
            c.cluster[1].listen = Some("127.0.0.1:0".into());
        }),
        ..BedOptions::bare()
    })
    .await;
    let (east, west) = (&bed.pg, &bed.more_clusters[0].1);
    for pg in [east, west] {
        let admin = pg.admin().await.unwrap();
        admin.batch_execute("CREATE DATABASE dev").await.unwrap();
    }
    let emu = &bed.emu;
    let main = bed.proxy_addr;
    let west_only = bed
        .listener_addrs
        .iter()
        .find(|(t, _)| t.as_deref() == Some("west"))
        .unwrap()
        .1;

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
