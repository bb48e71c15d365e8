//! The `process_*` self-metrics that Prometheus client libraries export, read from `/proc`:
//!
//! | metric | from |
//! |---|---|
//! | `process_cpu_seconds_total` | `/proc/self/stat` utime + stime |
//! | `process_resident_memory_bytes` | `/proc/self/status` `VmRSS` |
//! | `process_virtual_memory_bytes` | `/proc/self/stat` vsize |
//! | `process_open_fds` | the entries of `/proc/self/fd` |
//! | `process_max_fds` | `/proc/self/limits` "Max open files", the soft limit |
//! | `process_start_time_seconds` | `/proc/stat` btime + `/proc/self/stat` starttime |
//!
//! Clock-tick fields are divided by 100: the kernel reports them in `USER_HZ`, which is 100 on
//! every architecture Linux supports for user space (it is fixed by the ABI, unlike the kernel's
//! internal `HZ`), so there is no need to ask `sysconf(_SC_CLK_TCK)` through libc. Resident
//! memory comes from `VmRSS` in kB for the same reason: stat counts it in pages, whose size
//! would need libc. A value that cannot be read is left out, with its family; off Linux there
//! is no `/proc` and nothing is written.
//!
//! Parsing is done by pure functions over the files' text, tested below.

use msp_core::{MetricName, MetricType, Writer};

/// Clock ticks per second in `/proc` (`USER_HZ`).
const USER_HZ: f64 = 100.0;

/// What the process metrics report; `None` where a value could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: Option<f64>,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<f64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<f64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// The fields of `/proc/[pid]/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Field 14, in clock ticks.
    utime: u64,
    /// Field 15, in clock ticks.
    stime: u64,
    /// Field 22: ticks after boot at which the process started.
    starttime: u64,
    /// Field 23, in bytes.
    vsize: u64,
}

/// Parses `/proc/[pid]/stat`. The second field is the command name in parentheses, which may
/// itself hold spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the command name.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    Some(Stat { utime: field(14)?, stime: field(15)?, starttime: field(22)?, vsize: field(23)? })
}

/// A `Key:   1234 kB` line of `/proc/[pid]/status`, in bytes.
fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let mut words = line.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// The soft limit of "Max open files" in `/proc/[pid]/limits` (`None` if `unlimited`).
fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `btime` (boot time, seconds since the epoch) in `/proc/stat`.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

impl Process {
    /// Builds the values from the files' text, each `None` when unreadable.
    fn from_proc(
        stat: Option<&str>,
        status: Option<&str>,
        limits: Option<&str>,
        proc_stat: Option<&str>,
        open_fds: Option<usize>,
    ) -> Self {
        let stat = stat.and_then(parse_stat);
        let btime = proc_stat.and_then(parse_btime);
        Process {
            cpu_seconds: stat.map(|s| s.utime.saturating_add(s.stime) as f64 / USER_HZ),
            resident_memory_bytes: status.and_then(|s| parse_status_kb(s, "VmRSS")).map(|b| b as f64),
            virtual_memory_bytes: stat.map(|s| s.vsize as f64),
            open_fds: open_fds.map(|n| n as f64),
            max_fds: limits.and_then(parse_max_open_files).map(|n| n as f64),
            start_time_seconds: match (btime, stat) {
                (Some(b), Some(s)) => Some(b as f64 + s.starttime as f64 / USER_HZ),
                _ => None,
            },
        }
    }

    /// Reads this process's values from `/proc` (all `None` where there is none). The start
    /// time is the first one read, kept: the boot time it is counted from moves when the
    /// clock is stepped (NTP, a VM resumed), and a start time that moved would look like a
    /// restart (`MetricsServerPromRestarting`).
    pub fn read() -> Self {
        static START: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
        let read = |path: &str| std::fs::read_to_string(path).ok();
        // The listing holds the descriptor read_dir itself opened, as other clients' counts do.
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|entries| entries.count());
        let mut process = Process::from_proc(
            read("/proc/self/stat").as_deref(),
            read("/proc/self/status").as_deref(),
            read("/proc/self/limits").as_deref(),
            read("/proc/stat").as_deref(),
            open_fds,
        );
        if process.start_time_seconds.is_some() {
            process.start_time_seconds = *START.get_or_init(|| process.start_time_seconds);
        }
        process
    }

    /// Writes one family per value that was read.
    pub fn write_to(&self, w: &mut Writer<'_>) {
        let families: [(MetricName, &str, MetricType, Option<f64>); 6] = [
            (
                MetricName::from_static("process_cpu_seconds_total"),
                "Total user and system CPU time spent in seconds.",
                MetricType::Counter,
                self.cpu_seconds,
            ),
            (
                MetricName::from_static("process_resident_memory_bytes"),
                "Resident memory size in bytes.",
                MetricType::Gauge,
                self.resident_memory_bytes,
            ),
            (
                MetricName::from_static("process_virtual_memory_bytes"),
                "Virtual memory size in bytes.",
                MetricType::Gauge,
                self.virtual_memory_bytes,
            ),
            (
                MetricName::from_static("process_open_fds"),
                "Number of open file descriptors.",
                MetricType::Gauge,
                self.open_fds,
            ),
            (
                MetricName::from_static("process_max_fds"),
                "Maximum number of open file descriptors.",
                MetricType::Gauge,
                self.max_fds,
            ),
            (
                MetricName::from_static("process_start_time_seconds"),
                "Start time of the process since unix epoch in seconds.",
                MetricType::Gauge,
                self.start_time_seconds,
            ),
        ];
        for (name, help, kind, value) in families {
            let Some(value) = value else { continue };
            match w.family(&name, help, kind) {
                Ok(mut f) => f.sample([], value),
                // The client has gone.
                Err(msp_core::ExpositionError::Stopped) => return,
                Err(e) => log::error!("{e}"),
            }
        }
    }
}

/// Writes the `process_*` families for this process: those that can be read, none off Linux.
pub fn write(w: &mut Writer<'_>) {
    Process::read().write_to(w);
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_core::Format;

    /// A real line, read from a copy of `sleep` named `x) (y) z (w` (the kernel keeps the
    /// first 15 bytes of the name as `comm`).
    const REAL: &str = "19816 (x) (y) z (w) S 19815 19812 5767 0 -1 4194304 135 0 0 0 0 0 0 0 20 0 1 0 86668 \
                        2990080 389 18446744073709551615 94388300693504 94388300711433 140727713080400 0 0 0 0 6 0 \
                        1 0 0 17 0 0 0 0 0 0 94388300725520 94388300726784 94388932673536 140727713082074 \
                        140727713082094 140727713082094 140727713083367 0\n";

    /// The same shape, with CPU time spent.
    const STAT: &str = "41137 (x) (y) z (w) S 41100 41137 41100 34816 41137 4194304 1234 0 0 0 \
                        250 75 0 0 20 0 9 0 123456 1612709888 5012 18446744073709551615 \
                        94299563556864 94299576052509 140726832369552 0 0 0 0 4096 17987 0 0 0 \
                        17 1 0 0 0 0 0 94299579088576 94299579612584 94299606327296 \
                        140726832372436 140726832372474 140726832372474 140726832373733 0\n";

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let cases: &[(&str, Option<Stat>)] = &[
            (REAL, Some(Stat { utime: 0, stime: 0, starttime: 86_668, vsize: 2_990_080 })),
            (STAT, Some(Stat { utime: 250, stime: 75, starttime: 123_456, vsize: 1_612_709_888 })),
            (
                "1 (systemd) S 0 1 1 0 -1 4194560 52049 12484611 129 3402 1234 5678 40 23 20 0 1 0 10 175104000 3186 18446744073709551615 1 1 0 0 0 0 671173123 4096 1260 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
                Some(Stat { utime: 1234, stime: 5678, starttime: 10, vsize: 175_104_000 }),
            ),
            ("7 () R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 4096 1", Some(Stat { utime: 3, stime: 4, starttime: 5, vsize: 4096 })),
            // Cut short, no command name, a field that is not a number.
            ("41137 (x) S 41100 41137", None),
            ("41137 x S 1 2 3", None),
            ("7 (a) R 1 7 7 0 -1 0 0 0 0 0 three 4 0 0 20 0 1 0 5 4096 1", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_stat(text), *want, "{text}");
        }
    }

    #[test]
    fn status_limits_and_btime() {
        let status = "Name:\tmetrics-server-\nVmPeak:\t 1600000 kB\nVmSize:\t 1574912 kB\nVmRSS:\t   20048 kB\nRssAnon:\t 12000 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(20_048 * 1024));
        assert_eq!(parse_status_kb(status, "VmSize"), Some(1_574_912 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(parse_status_kb("VmRSS:\t 12 pages\n", "VmRSS"), None);
        assert_eq!(parse_status_kb("VmRSSx:\t 12 kB\n", "VmRSS"), None);

        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(parse_max_open_files("Max open files  unlimited  unlimited  files\n"), None);
        assert_eq!(parse_max_open_files("Max processes 10 10 processes\n"), None);

        let proc_stat = "cpu  1 2 3 4\nintr 1 2\nctxt 99\nbtime 1795574400\nprocesses 4242\n";
        assert_eq!(parse_btime(proc_stat), Some(1_795_574_400));
        assert_eq!(parse_btime("cpu 1 2\n"), None);
    }

    #[test]
    fn values_and_exposition() {
        let p = Process::from_proc(
            Some(STAT),
            Some("VmRSS:\t   20048 kB\n"),
            Some("Max open files            1024                 524288               files     \n"),
            Some("btime 1795574400\n"),
            Some(9),
        );
        assert_eq!(
            p,
            Process {
                cpu_seconds: Some(3.25),
                resident_memory_bytes: Some(20_529_152.0),
                virtual_memory_bytes: Some(1_612_709_888.0),
                open_fds: Some(9.0),
                max_fds: Some(1024.0),
                start_time_seconds: Some(1_795_575_634.56),
            }
        );
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::Text);
        p.write_to(&mut w);
        w.finish();
        assert_eq!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total 3.25\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes 20529152\n\
             # HELP process_virtual_memory_bytes Virtual memory size in bytes.\n\
             # TYPE process_virtual_memory_bytes gauge\n\
             process_virtual_memory_bytes 1612709888\n\
             # HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\n\
             process_open_fds 9\n\
             # HELP process_max_fds Maximum number of open file descriptors.\n\
             # TYPE process_max_fds gauge\n\
             process_max_fds 1024\n\
             # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds 1795575634.56\n"
        );
    }

    #[test]
    fn unreadable_values_leave_their_family_out() {
        let p = Process::from_proc(None, Some("VmRSS:\t 4 kB\n"), None, Some("btime 1\n"), None);
        assert_eq!(p, Process { resident_memory_bytes: Some(4096.0), ..Process::default() });
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::Text);
        p.write_to(&mut w);
        w.finish();
        assert_eq!(out.lines().filter(|l| l.starts_with("# TYPE")).count(), 1, "{out}");
        assert!(out.contains("\nprocess_resident_memory_bytes 4096\n"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let p = Process::read();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
        assert!(p.cpu_seconds.is_some_and(|c| c >= 0.0), "{p:?}");
        assert!(p.resident_memory_bytes.is_some_and(|b| b > 0.0), "{p:?}");
        assert!(p.virtual_memory_bytes.is_some_and(|b| b >= p.resident_memory_bytes.unwrap_or(0.0)), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3.0), "{p:?}");
        assert!(p.max_fds.is_some_and(|n| n >= p.open_fds.unwrap_or(0.0)), "{p:?}");
        // Started in the past, and not before boot or years ago.
        assert!(p.start_time_seconds.is_some_and(|t| t <= now + 1.0 && t > now - 86_400.0 * 365.0), "{p:?}");
    }
}
