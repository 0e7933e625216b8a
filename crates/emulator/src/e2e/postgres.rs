//! Minted passwords are real PostgreSQL logins: the emulator provisions them on a local
//! cluster (`local-cluster`) that stands in for both cluster `c1` and workgroup `wg1`.

use aws_config::SdkConfig;

use super::{assumed, config, Who, ANALYST};
use crate::Emulator;

/// Why: a local PostgreSQL (roles `analysts` and `bob` exist) and an emulator provisioning on it.
struct PgBed {
    pg: local_cluster::LocalPg,
    emu: Emulator,
}

impl PgBed {
    async fn start() -> PgBed {
        let pg = local_cluster::LocalPg::start(local_cluster::LocalPgOptions {
            hba_extra: vec!["host all all 127.0.0.1/32 scram-sha-256".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        pg.admin()
            .await
            .unwrap()
            .batch_execute("CREATE ROLE analysts; CREATE ROLE bob")
            .await
            .unwrap();
        let endpoint = (pg.host(), pg.port(), pg.admin_config());
        let emu = Emulator::start(
            config(endpoint.clone(), endpoint),
            ([127, 0, 0, 1], 0).into(),
        )
        .await
        .unwrap();
        PgBed { pg, emu }
    }

    async fn alice(&self) -> SdkConfig {
        super::sdk_config(&self.emu, Who::Alice.creds(), "us-east-1", false).await
    }

    async fn analyst(&self) -> SdkConfig {
        assumed(&self.alice().await, ANALYST, Some("ext-123")).await
    }

    async fn stop(self) {
        self.emu.shutdown().await;
        self.pg.stop().await;
    }

    /// Logs in over TCP (SCRAM) and returns `session_user` and whether it is a member of
    /// `analysts`.
    async fn login(
        &self,
        user: &str,
        password: &str,
    ) -> Result<(String, bool), tokio_postgres::Error> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(self.pg.host())
            .port(self.pg.port())
            .user(user)
            .password(password)
            .dbname("postgres");
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT session_user::text, pg_has_role(session_user, 'analysts', 'MEMBER')",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }
}

/// Why: the credential APIs whose passwords the login tests use.
#[derive(Debug, Clone, Copy)]
enum Mint {
    /// GetClusterCredentials for DbUser `bob` in DbGroup `analysts`, as alice.
    ClusterBobInAnalysts,
    /// GetClusterCredentialsWithIAM as alice.
    ClusterWithIamAlice,
    /// GetClusterCredentialsWithIAM as the assumed analyst role.
    ClusterWithIamAnalyst,
    /// Serverless GetCredentials as the assumed analyst role.
    ServerlessAnalyst,
}

impl Mint {
    /// `(DbUser, DbPassword)` of a fresh credential.
    async fn mint(self, bed: &PgBed) -> (String, String) {
        let pair =
            |u: Option<&str>, p: Option<&str>| (u.unwrap().to_owned(), p.unwrap().to_owned());
        match self {
            Mint::ClusterBobInAnalysts => {
                let out = aws_sdk_redshift::Client::new(&bed.alice().await)
                    .get_cluster_credentials()
                    .db_user("bob")
                    .cluster_identifier("c1")
                    .db_groups("analysts")
                    .send()
                    .await
                    .unwrap();
                pair(out.db_user(), out.db_password())
            }
            Mint::ClusterWithIamAlice | Mint::ClusterWithIamAnalyst => {
                let config = match self {
                    Mint::ClusterWithIamAlice => bed.alice().await,
                    _ => bed.analyst().await,
                };
                let out = aws_sdk_redshift::Client::new(&config)
                    .get_cluster_credentials_with_iam()
                    .cluster_identifier("c1")
                    .send()
                    .await
                    .unwrap();
                pair(out.db_user(), out.db_password())
            }
            Mint::ServerlessAnalyst => {
                let out = aws_sdk_redshiftserverless::Client::new(&bed.analyst().await)
                    .get_credentials()
                    .workgroup_name("wg1")
                    .send()
                    .await
                    .unwrap();
                pair(out.db_user(), out.db_password())
            }
        }
    }
}

#[tokio::test]
async fn minted_passwords_log_in_as_the_mapped_user_with_its_groups() {
    let bed = PgBed::start().await;
    let table = [
        (
            "GetClusterCredentials with DbGroups",
            Mint::ClusterBobInAnalysts,
            "IAM:bob",
            true,
        ),
        (
            "WithIAM as an IAM user",
            Mint::ClusterWithIamAlice,
            "IAM:alice",
            false,
        ),
        (
            "WithIAM as an assumed role",
            Mint::ClusterWithIamAnalyst,
            "IAMR:analyst",
            true,
        ),
        (
            "Serverless as an assumed role",
            Mint::ServerlessAnalyst,
            "IAMR:analyst",
            true,
        ),
    ];
    for (case, mint, user, member) in table {
        let (db_user, password) = mint.mint(&bed).await;
        assert_eq!(db_user, user, "{case}");
        let (who, is_member) = bed
            .login(&db_user, &password)
            .await
            .unwrap_or_else(|e| panic!("{case}: login failed: {e}"));
        assert_eq!((who.as_str(), is_member), (user, member), "{case}");
    }
    bed.stop().await;
}

#[tokio::test]
async fn a_new_credential_replaces_the_previous_password() {
    let bed = PgBed::start().await;
    let (_, first) = Mint::ServerlessAnalyst.mint(&bed).await;
    bed.login("IAMR:analyst", &first).await.unwrap();
    let (_, second) = Mint::ClusterWithIamAnalyst.mint(&bed).await;
    bed.login("IAMR:analyst", &second).await.unwrap();
    assert!(bed.login("IAMR:analyst", &first).await.is_err());
    bed.stop().await;
}

#[tokio::test]
async fn provisioned_logins_are_valid_until_the_credentials_expire() {
    let bed = PgBed::start().await;
    Mint::ClusterWithIamAlice.mint(&bed).await;
    Mint::ClusterWithIamAnalyst.mint(&bed).await;
    // Both credentials last the default 900 s.
    let row = bed
        .pg
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('IAM:alice', 'IAMR:analyst') \
             AND rolcanlogin AND rolvaliduntil BETWEEN now() + interval '14 minutes' \
             AND now() + interval '16 minutes'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    bed.stop().await;
}

#[tokio::test]
async fn a_paused_cluster_refuses_connections_and_once_resumed_takes_the_logins_minted_meanwhile() {
    use crate::ClusterStatus;
    use std::time::Duration;
    let bed = PgBed::start().await;
    bed.emu
        .set_cluster_power("c1", std::sync::Arc::new(bed.pg.power()));
    let alice = aws_sdk_redshift::Client::new(&bed.alice().await);
    alice
        .pause_cluster()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    bed.emu
        .wait_cluster_status("c1", ClusterStatus::Paused, Duration::from_secs(20))
        .await
        .unwrap();
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", bed.pg.port()))
        .await
        .is_err();
    let (user, password) = Mint::ClusterBobInAnalysts.mint(&bed).await;
    alice
        .resume_cluster()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    bed.emu
        .wait_cluster_status("c1", ClusterStatus::Available, Duration::from_secs(30))
        .await
        .unwrap();
    let login = bed.login(&user, &password).await.map(|(who, _)| who);
    assert_eq!((refused, login.ok().as_deref()), (true, Some("IAM:bob")));
    bed.stop().await;
}

#[tokio::test]
async fn a_rebooted_cluster_is_down_while_rebooting_and_takes_logins_once_available() {
    use crate::ClusterStatus;
    use std::time::{Duration, Instant};
    let bed = PgBed::start().await;
    let power = bed.pg.power();
    bed.emu
        .set_cluster_power("c1", std::sync::Arc::new(power.clone()));
    bed.emu.set_resume_delay(Duration::from_millis(1500));
    let (user, password) = Mint::ClusterBobInAnalysts.mint(&bed).await;
    bed.emu.reboot_cluster("c1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while power.is_running() {
        assert!(Instant::now() < deadline, "the database did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let while_down = (
        bed.emu.cluster_status("c1"),
        bed.login(&user, &password).await.is_err(),
    );
    bed.emu
        .wait_cluster_status("c1", ClusterStatus::Available, Duration::from_secs(30))
        .await
        .unwrap();
    let after = bed.login(&user, &password).await.map(|(who, _)| who);
    assert_eq!(
        (while_down, after.ok().as_deref()),
        ((Some(ClusterStatus::Rebooting), true), Some("IAM:bob"))
    );
    bed.stop().await;
}
