//! Command line: `redshift-iam-proxy --config FILE` runs the proxy.

use clap::{Parser, Subcommand};
use redshift_iam_proxy::app::server::Proxy;
use redshift_iam_proxy::aws::credentials::AwsIdentitySource;
use redshift_iam_proxy::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// Command-line arguments.
#[derive(Parser)]
#[command(
    name = "redshift-iam-proxy",
    version,
    about = "PostgreSQL-wire proxy for Amazon Redshift with IAM-minted credentials"
)]
struct Cli {
    /// Configuration file (see config.example.toml).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Subcommands beside the default "run the proxy".
#[derive(Subcommand)]
enum Command {
    /// Check a configuration: AWS identity, endpoints, credentials for each user, one login per target.
    Check(redshift_iam_proxy::app::check::CheckArgs),
    /// Print a SCRAM-SHA-256 verifier for [client_auth] scram_verifiers; the password is read from stdin.
    HashPassword,
    /// Run a self-contained demo: local PostgreSQL as the stand-in for Redshift, the emulator, and the proxy.
    #[cfg(feature = "demo")]
    Demo(redshift_iam_proxy::testbed::demo::DemoArgs),
    /// Print the path of the local CA certificate clients should trust (made if missing).
    CaPath,
    /// Print an AWS identity token (from your AWS credentials) to send as the password:
    /// PGPASSWORD=$(redshift-iam-proxy token --server-id ID) psql "host=… sslmode=verify-full"
    Token(redshift_iam_proxy::client::identity::presign::TokenArgs),
    /// Run the Redshift credential API emulator (for tests, CI pipelines and the demo).
    #[cfg(feature = "demo")]
    Emulator(Box<redshift_emulator::cli::EmulatorArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            #[cfg(feature = "demo")]
            Some(Command::Emulator(args)) => {
                match redshift_emulator::cli::run(*args, shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            #[cfg(feature = "demo")]
            Some(Command::Demo(args)) => {
                match redshift_iam_proxy::testbed::demo::run(args, shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Some(Command::HashPassword) => hash_password(),
            Some(Command::Token(args)) => {
                match redshift_iam_proxy::client::identity::presign::make(&args).await {
                    Ok(token) => {
                        println!("{token}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Some(Command::CaPath) => ca_path(cli.config.as_deref()),
            Some(Command::Check(args)) => {
                let Some(path) = cli.config else {
                    eprintln!("error: check needs --config FILE");
                    return ExitCode::from(2);
                };
                let config = match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                };
                println!("redshift-iam-proxy check: {}", path.display());
                let lines = redshift_iam_proxy::app::check::run(
                    &config,
                    AwsIdentitySource::DefaultChain,
                    &args,
                )
                .await;
                if redshift_iam_proxy::app::check::print(&lines) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            None => {
                let Some(path) = cli.config else {
                    eprintln!("error: --config FILE is required (see config.example.toml)");
                    return ExitCode::from(2);
                };
                run_proxy(path).await
            }
        }
    })
}

async fn run_proxy(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for warning in config.secret_file_warnings(&path) {
        tracing::warn!("{warning}");
    }
    let proxy = match Proxy::bind(config, AwsIdentitySource::DefaultChain).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    proxy.set_config_path(path);
    match proxy.local_addr() {
        Ok(addr) => {
            tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "redshift-iam-proxy listening")
        }
        Err(e) => tracing::warn!(error = %e, "listening (address unknown)"),
    }
    if let Some(addr) = proxy.admin_addr() {
        tracing::info!(%addr, "admin HTTP bound");
    }
    proxy.serve(shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// Sets up log lines: format from `log_format` (text or JSON), filter from `RUST_LOG`,
/// else the config's `log_filter` (reloadable), else "info". The proxy's config is read
/// here only for these two keys; errors in it are reported when it is loaded for real.
fn init_logging(cli: &Cli) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let config = match (&cli.command, &cli.config) {
        (None, Some(path)) => Config::load(path).ok(),
        _ => None,
    };
    let json = config
        .as_ref()
        .is_some_and(|c| c.log_format == redshift_iam_proxy::config::LogFormat::Json);
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_decides = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.log_filter.as_deref())
            .and_then(|f| EnvFilter::try_new(f).ok())
            .unwrap_or_else(|| EnvFilter::new("info"))
    });
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init();
    }
    if !env_decides {
        redshift_iam_proxy::admin::reload::set_log_filter_hook(Box::new(move |f: &str| {
            let new = EnvFilter::try_new(f).map_err(|e| e.to_string())?;
            handle.reload(new).map_err(|e| e.to_string())
        }));
    }
}

/// Prints the local CA certificate's path for `[client_tls]` of the config (defaults without one).
fn ca_path(config: Option<&std::path::Path>) -> ExitCode {
    let tls = match config.map(Config::load) {
        None => redshift_iam_proxy::config::ClientTlsConfig::default(),
        Some(Ok(c)) => c.client_tls,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(cert) = &tls.cert_file {
        eprintln!(
            "error: [client_tls] cert_file = {} is configured, so no local CA is used; clients trust the CA that signed that certificate",
            cert.display()
        );
        return ExitCode::from(2);
    }
    if !tls.local_ca {
        eprintln!("error: [client_tls] local_ca = false: the proxy makes a self-signed certificate at each start, which clients cannot trust");
        return ExitCode::from(2);
    }
    let ca = redshift_iam_proxy::client::localca::state_dir(&tls)
        .and_then(|dir| redshift_iam_proxy::client::localca::LocalCa::open_or_create(&dir));
    match ca {
        Ok(ca) => {
            println!("{}", ca.cert_path().display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads one password line from stdin and prints its SCRAM-SHA-256 verifier.
fn hash_password() -> ExitCode {
    use std::io::{BufRead, IsTerminal, Write};
    if std::io::stdin().is_terminal() {
        eprint!("password (input is echoed; pipe it in to avoid that): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("error: reading the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("error: empty password");
        return ExitCode::from(2);
    }
    println!(
        "{}",
        redshift_iam_proxy::client::auth::ScramVerifier::hash(password)
    );
    line.clear();
    ExitCode::SUCCESS
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM received"),
                _ = i.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; falling back to Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
