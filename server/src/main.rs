//! `metrics-server-prom [--demo] [--config FILE]`: see the README.

use std::path::PathBuf;
use std::process::ExitCode;

use msp_server::{config::Config, logging, Registry};

const USAGE: &str = "usage: metrics-server-prom [--demo] [--config FILE]
  --demo         serve a simulated cluster (no Kubernetes needed)
  --config FILE  TOML configuration (also MSP_CONFIG); MSP_* variables override it";

#[async_std::main]
async fn main() -> ExitCode {
    let (mut demo, mut file) = (false, std::env::var_os("MSP_CONFIG").map(PathBuf::from));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--demo" => demo = true,
            "--config" => file = args.next().map(PathBuf::from),
            "--version" => {
                println!("metrics-server-prom {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let registry = Registry::builtin();
    let mut config = match Config::load(file, &registry) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("metrics-server-prom: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_level);
    let _sim = if demo {
        match msp_server::demo::start(&mut config).await {
            Ok(sim) => Some(sim),
            Err(e) => {
                log::error!("demo: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    match msp_server::run(&config, &registry).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
