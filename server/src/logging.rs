//! A small stderr logger. Our crates log at the configured level; every other crate at
//! `warn` at most, because some (async-h1 at trace) print whole requests, and a request
//! carries the bearer token.

use log::{LevelFilter, Log, Metadata, Record};

struct Logger {
    level: LevelFilter,
}

fn ours(target: &str) -> bool {
    target.starts_with("msp_") || target.starts_with("metrics_server_prom")
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        let max = if ours(m.target()) { self.level } else { self.level.min(LevelFilter::Warn) };
        m.level() <= max
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{:<5} {}: {}", r.level(), r.target(), r.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once; later calls change nothing).
pub fn init(level: LevelFilter) {
    if log::set_boxed_logger(Box::new(Logger { level })).is_ok() {
        log::set_max_level(level);
    }
}
