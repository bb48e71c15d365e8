//! `msp-sim [--pods N] DIR`: runs the simulated API server (the demo cluster, or N
//! synthetic pods) until killed, described in DIR (`url`, `ca.crt`, `token`). The image
//! test points the production image, which has no simulator, at it.

use std::process::ExitCode;

use msp_sim::{Sim, SimCluster};

const TOKEN: &str = "msp-sim-token-not-secret";

#[async_std::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cluster, dir) = match args.as_slice() {
        [flag, n, dir] if flag == "--pods" => match n.parse() {
            Ok(n) => (SimCluster::synthetic(n), dir),
            Err(e) => {
                eprintln!("msp-sim: --pods {n:?}: {e}");
                return ExitCode::from(2);
            }
        },
        [dir] => (SimCluster::demo(), dir),
        _ => {
            eprintln!("usage: msp-sim [--pods N] DIR");
            return ExitCode::from(2);
        }
    };
    let sim = match Sim::start(cluster, TOKEN).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("msp-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = sim.write_files(std::path::Path::new(dir), TOKEN) {
        eprintln!("msp-sim: writing {dir}: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("msp-sim: {} (files in {dir})", sim.url);
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
