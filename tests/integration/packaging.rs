//! The container packaging stays consistent with the binary and the demo.
//! (No Docker engine runs here, so this checks what can be checked without one.)

use clap::Parser;
use redshift_emulator::EmulatorArgs;
use redshift_iam_proxy::config::Config;
use serde_yaml::Value;

fn root(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| s.as_i64().unwrap().to_string())
        })
        .collect()
}

/// Why: parses emulator flags exactly as the binary does, to check compose files against it.
#[derive(Parser)]
struct EmulatorCli {
    #[command(flatten)]
    args: EmulatorArgs,
}

#[test]
fn compose_services_match_the_binary_and_the_demo() {
    let compose: Value = serde_yaml::from_str(&root("docker-compose.yml")).unwrap();
    let services = &compose["services"];
    for s in ["postgres", "emulator", "proxy"] {
        assert!(services.get(s).is_some(), "service {s} missing");
    }

    // The emulator's flags parse with the real CLI definition.
    let cmd = strings(&services["emulator"]["command"]);
    assert_eq!(cmd[0], "emulator");
    let parsed = EmulatorCli::try_parse_from(
        std::iter::once("emulator".to_owned()).chain(cmd[1..].iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("compose emulator flags do not parse: {e}"));
    let emu = parsed.args.to_config();
    assert_eq!(emu.clusters.len(), 1);

    // The proxy's mounted config is valid and targets the emulated cluster.
    let volumes = strings(&services["proxy"]["volumes"]);
    let config_mount = volumes
        .iter()
        .find(|v| v.contains(":/etc/redshift-iam-proxy/config.toml"))
        .expect("proxy config mounted");
    let host_path = config_mount
        .split(':')
        .next()
        .unwrap()
        .trim_start_matches("./");
    let config = Config::from_toml(&root(host_path)).unwrap();
    assert_eq!(
        config.cluster[0].identifier.as_deref(),
        Some(emu.clusters[0].identifier.as_str())
    );
    assert_eq!(
        config.aws.endpoint_url.as_deref(),
        Some("http://emulator:8080")
    );
    // Same users and groups as `redshift-iam-proxy demo`.
    let users: Vec<(String, Vec<String>)> = config
        .users
        .iter()
        .map(|u| (u.client_user.clone(), u.db_groups.clone()))
        .collect();
    assert_eq!(
        users,
        vec![
            ("alice".into(), vec!["analysts".to_owned()]),
            ("bob".into(), vec!["engineers".to_owned()])
        ]
    );

    // The proxy signs with a key the emulator accepts.
    let env = &services["proxy"]["environment"];
    let key_id = env["AWS_ACCESS_KEY_ID"].as_str().unwrap();
    let secret = env["AWS_SECRET_ACCESS_KEY"].as_str().unwrap();
    assert!(emu
        .keys
        .iter()
        .any(|k| k.access_key_id == key_id && k.secret_access_key == secret));

    // PostgreSQL loads the demo's own schema file.
    let pg_volumes = strings(&services["postgres"]["volumes"]);
    assert!(pg_volumes
        .iter()
        .any(|v| v.starts_with("./deploy/demo-schema.sql:/docker-entrypoint-initdb.d/")));
    assert_eq!(
        root("deploy/demo-schema.sql"),
        redshift_iam_proxy::testbed::demo::SCHEMA_SQL
    );
    // Every file compose mounts exists.
    for v in pg_volumes.iter().chain(volumes.iter()) {
        if let Some(p) = v.strip_prefix("./") {
            let p = p.split(':').next().unwrap();
            assert!(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(p)
                    .exists(),
                "{p} missing"
            );
        }
    }
}

#[test]
fn dockerfile_is_multi_stage_and_runs_as_non_root() {
    let d = root("Dockerfile");
    assert_eq!(d.lines().filter(|l| l.starts_with("FROM ")).count(), 2);
    let user = d
        .lines()
        .find(|l| l.starts_with("USER "))
        .expect("USER line");
    assert!(
        !user.contains("root") && !user.trim_end().ends_with(" 0"),
        "{user}"
    );
    // Everything the manifest needs to build is copied into the build stage.
    for dir in ["src", "crates", "deploy", "Cargo.lock"] {
        assert!(
            d.contains(&format!("COPY {dir}")) || d.contains(&format!(" {dir} ")),
            "{dir} not copied"
        );
    }
}
