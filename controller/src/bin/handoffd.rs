//! `handoffd`: the handoff controller daemon.
//!
//! ```text
//! handoffd [--config PATH]     run (default config /etc/handoff/handoffd.yaml)
//! handoffd --check [--config PATH]   validate the config (a sample's placeholder secret fails) and exit
//! handoffd --version
//! ```
//! Under systemd, logs go to the journal as structured entries (see `init_logging`); elsewhere
//! to stderr. `RUST_LOG` overrides `log.level`.

// The controller is safe Rust: the compiler refuses any `unsafe` block (FFI lives in module/).
#![forbid(unsafe_code)]

use handoff::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_CONFIG: &str = "/etc/handoff/handoffd.yaml";
const USAGE: &str = "usage: handoffd [--config PATH] [--check] [--version]";

fn main() -> ExitCode {
    let mut config = PathBuf::from(DEFAULT_CONFIG);
    let mut check = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(p) => config = PathBuf::from(p),
                None => return usage_error("--config needs a path"),
            },
            "--check" => check = true,
            "--version" | "-V" => {
                println!("handoffd {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument '{other}'")),
        }
    }
    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("handoffd: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    if check {
        // A secret every reader of the samples knows is refused like any invalid value.
        if let Some(e) = cfg.placeholder_secret(&config.display().to_string()) {
            eprintln!("handoffd: {e}");
            return ExitCode::from(78);
        }
        println!("handoffd: {} is valid", config.display());
        if let Some(note) = cfg.alignment_note() {
            println!("handoffd: {note}");
        }
        report_device_differences(&cfg);
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("handoffd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("handoffd {} starting with {}", env!("CARGO_PKG_VERSION"), config.display());
    // The store and the pepper are opened inside the runtime (the verifier needs it).
    let ctl = match runtime.block_on(async { handoff::daemon::Controller::open(cfg) }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("handoffd: {e}");
            return ExitCode::from(78);
        }
    };
    match runtime.block_on(handoff::daemon::run(ctl, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2), // already logged as one line
    }
}

/// `--check`: the devices listed in the config whose store record differs (the config wins at
/// the next start). A store that does not exist yet or is held by a running handoffd is said so.
fn report_device_differences(cfg: &Config) {
    if cfg.devices.is_empty() {
        return;
    }
    let sled = cfg.store.backend == handoff::config::StoreBackend::Sled;
    if sled && !std::path::Path::new(&cfg.store.path).exists() {
        println!(
            "handoffd: store {} does not exist yet: the {} listed device(s) are added at start",
            cfg.store.path,
            cfg.devices.len()
        );
        return;
    }
    let store = match handoff::store::Store::open_configured(&cfg.store) {
        Ok(s) => s,
        Err(e) => {
            println!("handoffd: devices not compared with the store: {e}");
            return;
        }
    };
    match handoff::store::config_devices::differences(&store, &cfg.devices) {
        Ok(diffs) if diffs.is_empty() => {
            println!("handoffd: the {} listed device(s) match the store", cfg.devices.len())
        }
        Ok(diffs) => {
            for d in diffs {
                println!(
                    "handoffd: device '{}' differs from the store ({}, store → config); the config wins at the next start",
                    d.device, d.what
                );
            }
        }
        Err(e) => println!("handoffd: devices not compared with the store: {e}"),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("handoffd: {msg}\n{USAGE}");
    ExitCode::from(64) // EX_USAGE
}

/// Logs to the systemd journal natively when started by systemd (`JOURNAL_STREAM` names the
/// journal stream stderr is connected to): every event becomes a journal entry with PRIORITY
/// (error 3, warn 4, info 6, debug and trace 7),
/// TARGET and its fields as `HANDOFF_SESSION=`, `HANDOFF_AT_MS=`, ... so that
/// `journalctl -u handoffd HANDOFF_SESSION=...` finds one call's timeline. Elsewhere, plain lines on
/// stderr. `RUST_LOG` overrides `log.level`.
fn init_logging(level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("handoff={level},handoffd={level},warn")));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journal) => {
                // syslog's meanings: per-call info lines are routine (6), not notices (5, the
                // crate's default), so that `journalctl -p notice` shows only what needs a look.
                use tracing_journald::{Priority, PriorityMappings};
                let priorities = PriorityMappings {
                    error: Priority::Error,
                    warn: Priority::Warning,
                    info: Priority::Informational,
                    debug: Priority::Debug,
                    trace: Priority::Debug,
                };
                let journal = journal
                    .with_syslog_identifier("handoffd".into())
                    .with_field_prefix(Some("HANDOFF".into()))
                    .with_priority_mappings(priorities);
                tracing_subscriber::registry().with(filter).with(journal).init();
                return;
            }
            Err(e) => eprintln!("handoffd: journald unreachable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
