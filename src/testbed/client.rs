//! Client helpers: logging in with tokio-postgres and reading a refusal.

/// A tokio-postgres client logged in with `conninfo` (no TLS), its connection driven by a
/// task.
pub async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The SQLSTATE and message of a failed connect or query.
pub fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
        None => ("".into(), e.to_string()),
    }
}

/// Polls the boolean query `sql` (as `admin`) until it is true; panics naming `what` after
/// 20 s (test helper).
pub async fn wait_for(admin: &tokio_postgres::Client, sql: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ok: bool = match admin.query_one(sql, &[]).await {
            Ok(row) => row.get(0),
            Err(e) => panic!("{sql}: {e}"),
        };
        if ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
