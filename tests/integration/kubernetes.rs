//! deploy/kubernetes stays consistent with the binary: its flags, its config keys, the
//! admin endpoints, the image's user, and the shutdown timing.

use crate::support::BIN;
use redshift_iam_proxy::config::Config;
use serde::Deserialize;
use serde_yaml::Value;

fn docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!(
        "{}/deploy/kubernetes/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn port_of(listen: &str) -> i64 {
    listen.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The container port named `name`.
fn named_port(container: &Value, name: &str) -> i64 {
    container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
        .as_i64()
        .unwrap()
}

/// Checks one proxy container against the config it mounts; returns the config.
fn check_proxy_container(c: &Value, configmap: &Value, volumes: &Value) -> Config {
    // The args are flags the binary has, and --config names the mounted ConfigMap key.
    let args: Vec<String> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let help = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(flag.as_str()),
            "{flag} is not a flag of the binary"
        );
    }
    assert_eq!(args[0], "--config");
    let config_path = &args[1];
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let mount = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(config_path.as_str()))
        .expect("the config file is mounted");
    let key = mount["subPath"].as_str().unwrap();
    let volume = volumes
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], configmap["metadata"]["name"]);
    let config = Config::from_toml(configmap["data"][key].as_str().unwrap())
        .unwrap_or_else(|e| panic!("the ConfigMap's config is invalid: {e}"));

    // Probes hit the admin listener on the endpoints the binary serves.
    let admin = config
        .admin
        .listen
        .as_deref()
        .expect("[admin] listen is set");
    assert_eq!(named_port(c, "admin"), port_of(admin));
    for (probe, path) in [
        ("startupProbe", "/startup"),
        ("livenessProbe", "/liveness"),
        ("readinessProbe", "/readiness"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert!(redshift_iam_proxy::admin::http::PATHS.contains(&path));
        assert_eq!(get["port"].as_str(), Some("admin"), "{probe}");
    }
    if let Some(p) = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("postgres"))
    {
        assert_eq!(p["containerPort"].as_i64(), Some(port_of(&config.listen)));
    }

    // Non-root with a read-only root filesystem: every file the config names is mounted,
    // and the local CA (used without cert_file) has a writable place.
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    let mounted = |p: &std::path::Path| {
        mounts
            .iter()
            .any(|m| p.starts_with(m["mountPath"].as_str().unwrap()))
    };
    for f in [
        config.client_tls.cert_file.as_deref(),
        config.client_tls.key_file.as_deref(),
        config.client_auth.ca_file.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(mounted(f), "{} is not mounted", f.display());
    }
    if config.client_tls.cert_file.is_none() && config.client_tls.local_ca {
        let state = mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some("/var/lib/redshift-iam-proxy"))
            .expect("the local CA's state dir is mounted");
        let v = volumes
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == state["name"])
            .unwrap();
        assert!(v.get("emptyDir").is_some() || v.get("persistentVolumeClaim").is_some());
    }
    config
}

#[test]
fn deployment_probes_flags_and_mounts_match_the_binary() {
    let cm = docs("configmap.yaml");
    let dep = docs("deployment.yaml");
    let dep = kind(&dep, "Deployment");
    let spec = &dep["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let config = check_proxy_container(c, kind(&cm, "ConfigMap"), &spec["volumes"]);
    assert!(
        !config.admin.users.is_empty(),
        "the example has console users"
    );

    // The pod runs as the image's non-root user.
    let dockerfile =
        std::fs::read_to_string(format!("{}/Dockerfile", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let image_uid = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next())
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    assert_eq!(
        spec["securityContext"]["runAsUser"]
            .as_i64()
            .map(|u| u.to_string()),
        Some(image_uid)
    );

    // Kubernetes waits long enough for the SIGTERM delay and the drain.
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > config.admin.min_sigterm_delay_secs + config.limits.drain_timeout_secs,
        "terminationGracePeriodSeconds {grace} is shorter than the delay plus the drain"
    );
    assert!(config.admin.min_sigterm_delay_secs > 0);

    // The service account is the one defined.
    let sa = docs("serviceaccount.yaml");
    assert_eq!(
        spec["serviceAccountName"],
        kind(&sa, "ServiceAccount")["metadata"]["name"]
    );
}

#[test]
fn service_targets_the_deployment_ports() {
    let svc = docs("service.yaml");
    let svc = kind(&svc, "Service");
    let dep = docs("deployment.yaml");
    let dep = kind(&dep, "Deployment");
    let tmpl = &dep["spec"]["template"];
    for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&tmpl["metadata"]["labels"][k], v);
    }
    let c = &tmpl["spec"]["containers"][0];
    for p in svc["spec"]["ports"].as_sequence().unwrap() {
        let target = p["targetPort"].as_str().unwrap();
        named_port(c, target);
    }
    let ann = &tmpl["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"));
    assert_eq!(
        ann["prometheus.io/port"]
            .as_str()
            .map(|p| p.parse::<i64>().unwrap()),
        Some(named_port(c, "admin"))
    );
}

#[test]
fn replicas_find_each_other_through_a_headless_service_on_the_client_port() {
    let cm = docs("configmap.yaml");
    let dep = docs("deployment.yaml");
    let dep = kind(&dep, "Deployment");
    let tmpl = &dep["spec"]["template"];
    let c = &tmpl["spec"]["containers"][0];
    let config = check_proxy_container(c, kind(&cm, "ConfigMap"), &tmpl["spec"]["volumes"]);
    let peers = docs("peers-service.yaml");
    let peers = kind(&peers, "Service");
    assert_eq!(peers["spec"]["clusterIP"].as_str(), Some("None"));
    // Draining replicas still run queries a cancel may be for.
    assert_eq!(
        peers["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    for (k, v) in peers["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&tmpl["metadata"]["labels"][k], v);
    }
    // [peers] dns names this Service and the port the pods' client listener uses (a
    // headless name gives pod IPs: peers connect to the container port directly).
    let (name, port) = config.peers.dns_target().expect("[peers] dns is set");
    assert_eq!(Some(name.as_str()), peers["metadata"]["name"].as_str());
    assert_eq!(i64::from(port), named_port(c, "postgres"));
    assert_eq!(i64::from(port), port_of(&config.listen));
    assert!(config.peers.addresses.is_empty());
}

#[test]
fn sidecar_example_listens_on_loopback_with_probes() {
    let docs = docs("sidecar.yaml");
    let dep = kind(&docs, "Deployment");
    let spec = &dep["spec"]["template"]["spec"];
    let proxy = spec["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some("redshift-iam-proxy"))
        .expect("the proxy is a native sidecar");
    assert_eq!(proxy["restartPolicy"].as_str(), Some("Always"));
    let config = check_proxy_container(proxy, kind(&docs, "ConfigMap"), &spec["volumes"]);
    assert!(config.listen.starts_with("127.0.0.1:"));
    let app_env = spec["containers"][0]["env"][0]["value"].as_str().unwrap();
    assert!(app_env.contains(&format!("127.0.0.1:{}", port_of(&config.listen))));
}
