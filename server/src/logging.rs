//! A small stderr logger: one line per record, stamped with the time in RFC 3339 (UTC, to the
//! millisecond), as text or as a JSON object. Our crates log at the configured level; every
//! other crate at `warn` at most, because some (async-h1 at trace) print whole requests, and a
//! request carries the bearer token.
//!
//! ```text
//! 2026-11-25T02:40:00.123Z INFO  msp_server::serve: listening addr=0.0.0.0:9100
//! {"time":"2026-11-25T02:40:00.123Z","level":"info","target":"msp_server::serve","msg":"listening","addr":"0.0.0.0:9100"}
//! ```
//!
//! Key-value fields (`log::info!(addr = addr; "listening")`) follow the message: `key=value` in
//! text, members of the object in JSON (numbers and booleans as such, anything else as a
//! string; a field named like one of the four members above is written as `_time`, `_level`...).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::kv::{self, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};

/// How each log line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL target: message key=value...`, for people.
    #[default]
    Text,
    /// One JSON object per line, with `time`, `level`, `target`, `msg` and the fields, for
    /// log collectors.
    Json,
}

/// A log format that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {original:?}: use \"text\" or \"json\"")]
pub struct ParseLogFormatError {
    /// What was given.
    pub original: String,
}

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    /// `text` or `json`, in any case, as the log level is read.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(ParseLogFormatError { original: s.to_owned() }),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

struct Logger {
    level: LevelFilter,
    format: LogFormat,
}

/// The crates under the service that log each request, connection or poll at `info` and
/// below: they are held at `warn`. Every other target (ours, and an embedder's own) logs at
/// the configured level.
const CHATTY: &[&str] = &[
    "async_global_executor",
    "async_h1",
    "async_io",
    "async_std",
    "blocking",
    "futures_rustls",
    "http_client",
    "http_types",
    "polling",
    "rustls",
    "surf",
    "tide",
];

fn chatty(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    CHATTY.contains(&krate)
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        let max = if chatty(m.target()) { self.level.min(LevelFilter::Warn) } else { self.level };
        m.level() <= max
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let line = render(self.format, now, r);
            // One write per line, so lines from several threads do not interleave; a closed
            // stderr is no reason to stop serving.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once; later calls change nothing), and a panic hook that writes a
/// panic as one line of it: an enricher that panics fails its call alone (and is logged as
/// failing), and its panic must not put raw text among JSON lines on every scrape.
pub fn init(level: LevelFilter, format: LogFormat) {
    if log::set_boxed_logger(Box::new(Logger { level, format })).is_ok() {
        log::set_max_level(level);
        std::panic::set_hook(Box::new(log_panic));
    }
}

/// A panic, as one error line (with the backtrace when `RUST_BACKTRACE` asks for it); on
/// stderr as the standard hook writes it when the log is off, so no panic is silent.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = msp_core::panic_message(info.payload());
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let at = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
    let backtrace = std::backtrace::Backtrace::capture();
    let trace = match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
        _ => String::new(),
    };
    if log::log_enabled!(target: "panic", log::Level::Error) {
        log::error!(target: "panic", "thread '{name}' panicked{at}: {message}{trace}");
    } else {
        eprintln!("thread '{name}' panicked{at}:\n{message}{trace}");
    }
}

/// One record as a line (with its newline), stamped `since_epoch`.
fn render(format: LogFormat, since_epoch: Duration, r: &Record<'_>) -> String {
    let time = msp_core::format_rfc3339_ms(since_epoch);
    let mut line = String::with_capacity(128);
    match format {
        LogFormat::Text => {
            let _ = write!(line, "{time} {:<5} {}: ", r.level(), r.target());
            push_one_line(&mut line, &r.args().to_string());
            let _ = r.key_values().visit(&mut TextFields(&mut line));
        }
        LogFormat::Json => {
            line.push_str("{\"time\":");
            push_json_str(&mut line, &time);
            line.push_str(",\"level\":");
            push_json_str(&mut line, &r.level().as_str().to_ascii_lowercase());
            line.push_str(",\"target\":");
            push_json_str(&mut line, r.target());
            line.push_str(",\"msg\":");
            push_json_str(&mut line, &r.args().to_string());
            let _ = r.key_values().visit(&mut JsonFields(&mut line));
            line.push('}');
        }
    }
    line.push('\n');
    line
}

/// `s` on one line: line breaks and other control characters (a tab aside) escaped as
/// `\n`, `\r`, `\u{1b}`. A message carries text from elsewhere (an object's name from
/// the API server, an exec plugin's stderr, a backtrace); a line break in it must not start
/// what reads as a record of its own.
fn push_one_line(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// `s` as a JSON string, escaped by serde_json.
fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serializing a str cannot fail; keep the line valid JSON regardless.
        Err(_) => out.push_str("\"\""),
    }
}

/// Writes fields as ` key=value`, quoting values that are empty or hold spaces, quotes or
/// control characters.
struct TextFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let value = value.to_string();
        let plain = !value.is_empty() && !value.chars().any(|c| c == ' ' || c == '"' || c == '=' || c.is_control());
        if plain {
            let _ = write!(self.0, " {key}={value}");
        } else {
            let _ = write!(self.0, " {key}={value:?}");
        }
        Ok(())
    }
}

/// Writes fields as `,"key":value`.
struct JsonFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let key = key.as_str();
        self.0.push(',');
        if matches!(key, "time" | "level" | "target" | "msg") {
            push_json_str(self.0, &format!("_{key}"));
        } else {
            push_json_str(self.0, key);
        }
        self.0.push(':');
        let number = value
            .to_i64()
            .map(serde_json::Number::from)
            .or_else(|| value.to_u64().map(serde_json::Number::from))
            .or_else(|| value.to_f64().and_then(serde_json::Number::from_f64));
        match (value.to_bool(), number) {
            (Some(b), _) => self.0.push_str(if b { "true" } else { "false" }),
            (None, Some(n)) => {
                let _ = write!(self.0, "{n}");
            }
            (None, None) => push_json_str(self.0, &value.to_string()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    #[test]
    fn log_format_parses() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("JSON".parse(), Ok(LogFormat::Json), "in any case, as the level");
        let err = "logfmt".parse::<LogFormat>().expect_err("not ours");
        assert_eq!(err.original, "logfmt");
        assert_eq!(err.to_string(), r#"unknown log format "logfmt": use "text" or "json""#);
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    const AT: Duration = Duration::from_millis(1_795_574_400_123);

    #[test]
    fn text_line_shape() {
        let fields: &[(&str, kv::Value<'_>)] =
            &[("addr", kv::Value::from("0.0.0.0:9100")), ("why", "two words".into())];
        let record = Record::builder()
            .level(Level::Info)
            .target("msp_server::serve")
            .args(format_args!("listening"))
            .key_values(&fields)
            .build();
        assert_eq!(
            render(LogFormat::Text, AT, &record),
            "2026-11-25T02:40:00.123Z INFO  msp_server::serve: listening addr=0.0.0.0:9100 why=\"two words\"\n"
        );
    }

    #[test]
    fn a_text_line_stays_one_line_whatever_its_message_holds() {
        let forged = "evil\n2026-12-02T04:00:00.000Z ERROR msp_server: FORGED\r\x1b[2J\ttab";
        let line = render(
            LogFormat::Text,
            AT,
            &Record::builder()
                .level(Level::Warn)
                .target("msp_server::exporter")
                .args(format_args!("dropped pod a/{forged}: invalid quantity"))
                .build(),
        );
        assert_eq!(
            line,
            "2026-11-25T02:40:00.123Z WARN  msp_server::exporter: dropped pod a/evil\\n2026-12-02T04:00:00.000Z ERROR msp_server: FORGED\\r\\u{1b}[2J\ttab: invalid quantity\n"
        );
    }

    #[test]
    fn json_line_shape() {
        let fields: &[(&str, kv::Value<'_>)] = &[
            ("resource", kv::Value::from("pods")),
            ("status", 503_u64.into()),
            ("retry", true.into()),
            ("msg", "shadowed".into()),
        ];
        // A record borrows its format_args!, so it is rendered where it is built.
        let line = render(
            LogFormat::Json,
            AT,
            &Record::builder()
                .level(Level::Warn)
                .target("msp_server::cache")
                .args(format_args!("list failed: \"quoted\"\nsecond line \\ tab\t{}", '\u{1}'))
                .key_values(&fields)
                .build(),
        );
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'), "one line: {line}");
        assert!(line.starts_with(r#"{"time":"2026-11-25T02:40:00.123Z","level":"warn","#), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2026-11-25T02:40:00.123Z",
                "level": "warn",
                "target": "msp_server::cache",
                "msg": "list failed: \"quoted\"\nsecond line \\ tab\t\u{1}",
                "resource": "pods",
                "status": 503,
                "retry": true,
                "_msg": "shadowed",
            })
        );
    }

    /// Run alone, in a process of its own, by the next test (which asks for it with
    /// `--ignored` and `MSP_TEST_PANIC_CHILD`): the logger installed, a panic caught. Run
    /// otherwise (`--include-ignored`), it does nothing: it would install the logger and
    /// the panic hook for every test after it.
    #[test]
    #[ignore = "the next test runs it in a process of its own"]
    fn a_panic_in_a_process_of_its_own() {
        if std::env::var_os("MSP_TEST_PANIC_CHILD").is_none() {
            return;
        }
        init(LevelFilter::Info, LogFormat::Json);
        let caught = std::panic::catch_unwind(|| panic!("an enricher's bug"));
        assert!(caught.is_err());
    }

    #[test]
    fn a_panic_is_one_json_line_of_the_log() {
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args(["logging::tests::a_panic_in_a_process_of_its_own", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads=1"])
            .env("MSP_TEST_PANIC_CHILD", "1")
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("run");
        assert!(out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<serde_json::Value> =
            stderr.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect(l)).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert_eq!(lines[0]["level"], "error");
        let msg = lines[0]["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("panicked at server/src/logging.rs:") && msg.ends_with(": an enricher's bug"), "{msg}");
    }

    #[test]
    fn the_chatty_crates_under_us_are_capped_at_warn_and_an_embedders_are_not() {
        let logger = Logger { level: LevelFilter::Trace, format: LogFormat::Json };
        let meta = |level, target| Metadata::builder().level(level).target(target).build();
        assert!(logger.enabled(&meta(Level::Trace, "msp_server::kube")));
        assert!(logger.enabled(&meta(Level::Warn, "async_h1::server")));
        assert!(!logger.enabled(&meta(Level::Info, "async_h1::server")));
        assert!(!logger.enabled(&meta(Level::Info, "tide::log::middleware")));
        assert!(!logger.enabled(&meta(Level::Debug, "rustls")));
        // An embedder's crate, and its examples' binaries, log at the configured level.
        assert!(logger.enabled(&meta(Level::Debug, "embed_tide")));
        assert!(logger.enabled(&meta(Level::Info, "team_enricher::lookup")));
        assert!(logger.enabled(&meta(Level::Info, "tidewater")));
        let info = Logger { level: LevelFilter::Info, format: LogFormat::Json };
        assert!(!info.enabled(&meta(Level::Debug, "embed_tide")));
    }
}
