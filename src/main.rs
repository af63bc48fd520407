//! The `oauth-egress` command: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

/// Exit status for a config that cannot be used (sysexits EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "oauth-egress",
    version,
    about = "Outbound proxy that injects OAuth 2.0 JWT bearer tokens into SOAP and REST calls"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the proxy.
    Run {
        #[arg(long, short, default_value = "/etc/oauth-egress/oauth-egress.toml")]
        config: PathBuf,
    },
    /// Load and check a config (TOML, keys, WSDLs, URLs); print every error with its file and line.
    Check {
        #[arg(long, short, default_value = "/etc/oauth-egress/oauth-egress.toml")]
        config: PathBuf,
    },
    /// Run the whole pipeline on loopback with a local token endpoint and upstream, and show it.
    Demo,
    /// Compile a WSDL and list its services, ports and operations (SOAPAction, input element).
    Wsdl { file: PathBuf },
    /// Check one SOAP envelope (a file, or standard input) as a route with this WSDL would, and
    /// print the fault the proxy would answer with, or `valid: <operation>`.
    Validate {
        #[arg(long)]
        wsdl: PathBuf,
        /// The envelope; standard input when absent.
        envelope: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "strict")]
        validation: ValidationArg,
        /// The request's SOAPAction (SOAP 1.1) or action parameter (SOAP 1.2).
        #[arg(long)]
        soap_action: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ValidationArg {
    Strict,
    Lax,
    Off,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` logs as its config says, once the config is read; the other commands log for people.
    if !matches!(cli.command, Command::Run { .. }) {
        let level = if matches!(cli.command, Command::Demo) { "warn" } else { "info" };
        init_logging(level, oauth_egress::config::raw::LogFormat::Human);
    }

    // `run` reads its config before the runtime starts: the config says how many threads serve.
    let mut loaded = None;
    if let Command::Run { config: path } = &cli.command {
        match oauth_egress::Config::load(path) {
            Ok(c) => {
                init_logging("info", c.log_format);
                loaded = Some(c);
            }
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        }
    }
    // The main thread's runtime is single-threaded: with one worker, or pinned workers, it is the
    // first of them (a task is woken without the atomics and queues work stealing needs); `run`
    // starts the others, or the work-stealing runtime that unpinned workers share.
    let mut builder = tokio::runtime::Builder::new_current_thread();
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oauth-egress: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Check { config } => match oauth_egress::Config::load(&config) {
                Ok(c) => {
                    println!("{}: OK ({} providers, {} routes)", config.display(), c.providers.len(), c.routes.len());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            },
            Command::Run { config: path } => {
                let Some(config) = loaded else { return ExitCode::FAILURE };
                let app = match oauth_egress::App::new(config) {
                    Ok(app) => Arc::new(app.with_source(path)),
                    Err(e) => {
                        eprintln!("oauth-egress: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                // Registered before READY=1 is sent, so that no SIGHUP finds the default action.
                #[cfg(unix)]
                tokio::spawn(reload_on_hangup(
                    Arc::clone(&app),
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
                ));
                match oauth_egress::run(app, shutdown_signal(), None).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("oauth-egress: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Wsdl { file } => match oauth_egress::offline::load(&file) {
                Ok(wsdl) => {
                    print!("{}", oauth_egress::offline::describe(&wsdl));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            },
            Command::Validate { wsdl, envelope, validation, soap_action } => {
                let wsdl = match oauth_egress::offline::load(&wsdl) {
                    Ok(w) => w,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(EXIT_BAD_CONFIG);
                    }
                };
                let body = match &envelope {
                    Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
                    None => {
                        let mut buf = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                            .map(|_| buf)
                            .map_err(|e| format!("stdin: {e}"))
                    }
                };
                let body = match body {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("oauth-egress: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let mode = match validation {
                    ValidationArg::Strict => oauth_egress::soap::validate::Mode::Strict,
                    ValidationArg::Lax => oauth_egress::soap::validate::Mode::Lax,
                    ValidationArg::Off => oauth_egress::soap::validate::Mode::Off,
                };
                match oauth_egress::offline::validate(&wsdl, &body, mode, soap_action.as_deref(), &Default::default()) {
                    oauth_egress::offline::Verdict::Valid(op) => {
                        println!("valid: {op}");
                        ExitCode::SUCCESS
                    }
                    oauth_egress::offline::Verdict::Fault(fault) => {
                        println!("{fault}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Demo => match oauth_egress::demo::run().await {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("oauth-egress demo: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

/// SIGHUP (`systemctl reload`): reads the config file again and serves it, or logs why not and
/// keeps the running one. Reloads run one at a time, off the request path.
#[cfg(unix)]
async fn reload_on_hangup(app: Arc<oauth_egress::App>, hup: Option<tokio::signal::unix::Signal>) {
    let Some(mut hup) = hup else { return };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the config.");
        match app.reload_source().await {
            Ok(done) => oauth_egress::admin::log_reloaded(&done),
            Err(errors) => oauth_egress::admin::log_refused(&errors),
        }
    }
}

/// Logs to standard error (the journal, under systemd): `RUST_LOG` or `level`, as text for
/// people or one JSON object per line. Every line of a request carries its `request_id`.
fn init_logging(level: &str, format: oauth_egress::config::raw::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        oauth_egress::config::raw::LogFormat::Human => builder.init(),
        oauth_egress::config::raw::LogFormat::Json => {
            builder.json().with_current_span(true).with_span_list(false).flatten_event(true).init()
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("Shutting down: no new connections, open requests may finish.");
}
