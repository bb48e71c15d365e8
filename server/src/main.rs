//! `metrics-server-prom [--demo] [--config FILE]`: see the README.

use std::path::PathBuf;
use std::process::ExitCode;

use msp_server::{init_logging, Config, LogFormat, Registry};

const USAGE: &str = "usage: metrics-server-prom [--demo] [--config FILE]
  --demo         serve a simulated cluster (no Kubernetes needed; needs the default `demo` feature)
  --config FILE  TOML configuration (also MSP_CONFIG, which it replaces); MSP_* variables override it
  --version      print version, revision and target";

/// The usage, then every `MSP_` variable with its default (from the configuration's own
/// defaults, so the two cannot drift).
fn help() -> String {
    let mut out = format!("{USAGE}\n\nEnvironment (MSP_ variables override the file; nested keys joined by __):\n");
    for (var, default) in msp_server::config_variables() {
        out.push_str(&format!("  {var:<40} default: {default}\n"));
    }
    out.push_str(
        "\nAlso read: MSP_CONFIG (the file, as --config); POD_NAME, else HOSTNAME (the shard's ordinal).\n\
         README.md's Configuration says what each key means.\n",
    );
    out
}

#[async_std::main]
async fn main() -> ExitCode {
    // No --config: Config::load reads MSP_CONFIG's file.
    let (mut demo, mut file) = (false, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--demo" => demo = true,
            "--config" => match args.next() {
                Some(path) => file = Some(PathBuf::from(path)),
                None => {
                    eprintln!("--config needs a file\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            other if other.starts_with("--config=") => file = Some(PathBuf::from(&other["--config=".len()..])),
            "--version" => {
                println!(
                    "metrics-server-prom {} (revision {}, {}, {})",
                    env!("CARGO_PKG_VERSION"),
                    env!("BUILD_REVISION"),
                    env!("BUILD_TARGET"),
                    env!("BUILD_RUSTC")
                );
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                print!("{}", help());
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let mut config = match Config::load(file, &Registry::builtin()) {
        Ok(c) => c,
        Err(e) => {
            // With MSP_LOG_FORMAT=json (read as it is: the configuration did not load), a
            // JSON line as every other, for a pipeline that parses each line.
            if std::env::var("MSP_LOG_FORMAT").is_ok_and(|f| f.parse() == Ok(LogFormat::Json)) {
                init_logging(log::LevelFilter::Error, LogFormat::Json);
                log::error!("{e}");
            } else {
                eprintln!("metrics-server-prom: {e}");
            }
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level, config.log_format);
    let _demo = if demo {
        match start_demo(&mut config).await {
            Ok(sim) => Some(sim),
            Err(code) => return code,
        }
    } else {
        None
    };
    let result = msp_server::run(&config).await;
    drop(_demo);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal(&e.to_string());
            let no_cluster = matches!(&e, msp_server::StartError::Endpoint(e) if e.no_cluster());
            if no_cluster
                && config.kubernetes.api_url.is_none()
                && std::env::var_os("KUBERNETES_SERVICE_HOST").is_none()
            {
                fatal("no cluster found. To try it without a cluster: metrics-server-prom --demo");
            }
            match e {
                // What was configured cannot be used (the API server's settings, the
                // web-config file): a configuration error, as an invalid key is.
                msp_server::StartError::Endpoint(_) | msp_server::StartError::Web(_) => ExitCode::from(2),
                msp_server::StartError::Listen { .. } => ExitCode::FAILURE,
            }
        }
    }
}

/// Why the service stops, logged; on stderr as it is when logging is off
/// (`MSP_LOG_LEVEL=off`), so no failure is silent.
fn fatal(message: &str) {
    if log::log_enabled!(log::Level::Error) {
        log::error!("{message}");
    } else {
        eprintln!("metrics-server-prom: {message}");
    }
}

#[cfg(feature = "demo")]
async fn start_demo(config: &mut Config) -> Result<impl Sized, ExitCode> {
    msp_server::start_demo(config).await.map_err(|e| {
        fatal(&format!("demo: {e}"));
        ExitCode::FAILURE
    })
}

/// Nothing to keep alive: this build has no simulator.
#[cfg(not(feature = "demo"))]
struct NoDemo;

#[cfg(not(feature = "demo"))]
async fn start_demo(_: &mut Config) -> Result<NoDemo, ExitCode> {
    fatal("--demo: this build has no simulator (built without the `demo` feature)");
    Err(ExitCode::from(2))
}
