//! kubeconfig exec credential plugins (`users[].user.exec`, `client.authentication.k8s.io`
//! `v1` and `v1beta1`): what `aws eks get-token`, `gke-gcloud-auth-plugin` and `kubelogin`
//! are. The plugin runs on the blocking pool with a timeout, never on the async threads; its
//! token is kept until `status.expirationTimestamp` (or a 401), and never printed.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::token::Secret;

/// How long a plugin may run.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// A credential is run for again this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// The most of a plugin's stdout read (an `ExecCredential` is a few KiB).
const MAX_STDOUT: usize = 1024 * 1024;

/// The most of a plugin's stderr kept for an error message.
const MAX_STDERR: usize = 4 * 1024;

/// The API versions understood.
pub const API_VERSIONS: [&str; 2] = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"];

/// An exec plugin as the kubeconfig describes it, checked.
#[derive(Clone)]
pub struct ExecConfig {
    /// `apiVersion`, one of [`API_VERSIONS`].
    pub api_version: String,
    /// `command`; a relative path with a `/` is relative to the kubeconfig's directory.
    pub command: PathBuf,
    /// `args`.
    pub args: Vec<String>,
    /// `env`, added to our own environment.
    pub env: Vec<(String, String)>,
    /// `spec.cluster` for `KUBERNETES_EXEC_INFO`, when `provideClusterInfo` is set.
    pub cluster: Option<serde_json::Value>,
    /// `installHint`, shown when the command cannot be started.
    pub install_hint: Option<String>,
}

impl std::fmt::Debug for ExecConfig {
    /// The command and arguments only: `env` values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExecConfig")
            .field("api_version", &self.api_version)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &env)
            .finish_non_exhaustive()
    }
}

impl ExecConfig {
    /// Resolves `command` against the kubeconfig's directory, as client-go does: a bare name
    /// is looked up in `PATH`, a relative path is taken from `dir`.
    pub fn relative_to(mut self, dir: &Path) -> Self {
        if self.command.is_relative() && self.command.components().count() > 1 {
            self.command = dir.join(&self.command);
        }
        self
    }
}

/// Why the plugin gave no credential.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// It could not be started.
    #[error("exec plugin {command}: could not start it: {source}{hint}")]
    Spawn {
        /// The command.
        command: String,
        /// The I/O error.
        source: std::io::Error,
        /// The kubeconfig's `installHint`, prefixed with a newline, or empty.
        hint: String,
    },
    /// It ran longer than `EXEC_TIMEOUT` (30 s), and was killed.
    #[error("exec plugin {command}: no answer within {after:?}; killed it. Its stderr: {stderr}")]
    Timeout {
        /// The command.
        command: String,
        /// The timeout.
        after: Duration,
        /// The start of its stderr.
        stderr: String,
    },
    /// It exited unsuccessfully.
    #[error("exec plugin {command}: {status}. Its stderr: {stderr}")]
    Failed {
        /// The command.
        command: String,
        /// The exit status.
        status: std::process::ExitStatus,
        /// The start of its stderr.
        stderr: String,
    },
    /// Its output is not an `ExecCredential` we can use.
    #[error("exec plugin {command}: {message}")]
    Output {
        /// The command.
        command: String,
        /// What is wrong (never the output itself: it holds the token).
        message: String,
    },
    /// The run this request waited for (begun for another) failed.
    #[error("{message} (the run this request waited for)")]
    Shared {
        /// That run's error.
        message: String,
    },
    /// Not run: the request that asked had stopped waiting before its turn came.
    #[error("exec plugin {command}: not run, no request was waiting any more")]
    NotRun {
        /// The command.
        command: String,
    },
}

/// A credential from the plugin.
struct Credential {
    token: Secret,
    expires: Option<SystemTime>,
    obtained: Instant,
}

impl Credential {
    fn fresh(&self) -> bool {
        self.expires.is_none_or(|at| SystemTime::now() + EXPIRY_MARGIN < at)
    }
}

/// An exec plugin and the credential it last gave.
#[derive(Debug)]
pub struct ExecPlugin {
    config: Arc<ExecConfig>,
    timeout: Duration,
    current: Arc<async_std::sync::Mutex<Kept>>,
}

/// What the last run left: its credential, or when it failed and why.
#[derive(Debug, Default)]
struct Kept {
    credential: Option<Credential>,
    failed: Option<(Instant, String)>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("token", &self.token).field("expires", &self.expires).finish()
    }
}

impl ExecPlugin {
    /// A plugin run with [`EXEC_TIMEOUT`].
    pub fn new(config: ExecConfig) -> Self {
        Self::with_timeout(config, EXEC_TIMEOUT)
    }

    /// A plugin run with `timeout`.
    pub fn with_timeout(config: ExecConfig, timeout: Duration) -> Self {
        ExecPlugin { config: Arc::new(config), timeout, current: Default::default() }
    }

    /// The token: the one kept, if it has not expired, else the plugin's next. Callers
    /// that arrive while the plugin runs wait for its answer rather than run it again.
    ///
    /// The plugin runs on a task of its own: a caller that gives up waiting (its request's
    /// deadline, shorter than the plugin's) leaves the run to finish and keep what it
    /// gives, so the next caller waits for that run rather than start another beside it.
    /// Those that waited for a run that failed get its error, not a run each; a caller
    /// gone before its turn starts none; and a run that fails after its caller left is
    /// logged, having no one else to tell.
    pub async fn token(&self) -> Result<Secret, ExecError> {
        let kept =
            self.current.try_lock().and_then(|c| c.credential.as_ref().filter(|c| c.fresh()).map(|c| c.token.clone()));
        if let Some(token) = kept {
            return Ok(token);
        }
        let (current, config, timeout) = (self.current.clone(), self.config.clone(), self.timeout);
        let waiting = Arc::new(());
        let caller = Arc::downgrade(&waiting);
        let asked = Instant::now();
        let token = async_std::task::spawn(async move {
            let mut current = current.lock().await;
            if let Some(c) = current.credential.as_ref().filter(|c| c.fresh()) {
                return Ok(c.token.clone());
            }
            if let Some((_, message)) = current.failed.as_ref().filter(|(at, _)| *at >= asked) {
                return Err(ExecError::Shared { message: message.clone() });
            }
            if caller.strong_count() == 0 {
                return Err(ExecError::NotRun { command: config.command.display().to_string() });
            }
            let plugin = config.clone();
            let credential = match async_std::task::spawn_blocking(move || run(&plugin, timeout)).await {
                Ok(credential) => credential,
                Err(e) => {
                    if caller.strong_count() == 0 {
                        log::warn!("{e} (the request that ran it had stopped waiting)");
                    }
                    current.failed = Some((Instant::now(), e.to_string()));
                    return Err(e);
                }
            };
            log::debug!(
                "exec plugin {}: new credential{}",
                config.command.display(),
                match credential.expires {
                    Some(at) => format!(", valid for {:?}", at.duration_since(SystemTime::now()).unwrap_or_default()),
                    None => String::new(),
                }
            );
            let token = credential.token.clone();
            *current = Kept { credential: Some(credential), failed: None };
            Ok(token)
        })
        .await;
        drop(waiting);
        token
    }

    /// After a 401 to a request sent at `sent`: forgets the credential if it is older than
    /// that request, so the next [`ExecPlugin::token`] runs the plugin again. (Concurrent
    /// requests refused with the same token make it run once, not once each.)
    pub async fn invalidate(&self, sent: Instant) {
        let mut current = self.current.lock().await;
        if current.credential.as_ref().is_some_and(|c| c.obtained <= sent) {
            current.credential = None;
        }
    }

    /// The token kept now, without running anything.
    pub fn kept(&self) -> Option<Secret> {
        self.current.try_lock().and_then(|c| c.credential.as_ref().map(|c| c.token.clone()))
    }
}

/// `KUBERNETES_EXEC_INFO`: an `ExecCredential` with `spec.interactive` false and, when
/// asked for, `spec.cluster`.
fn exec_info(config: &ExecConfig) -> String {
    let mut spec = serde_json::json!({ "interactive": false });
    if let Some(cluster) = &config.cluster {
        spec["cluster"] = cluster.clone();
    }
    serde_json::json!({ "apiVersion": config.api_version, "kind": "ExecCredential", "spec": spec }).to_string()
}

/// One of the plugin's output pipes and what it gave, up to `max` bytes; the rest is read
/// and dropped, so the plugin never blocks on a full pipe. Read on the thread that runs the
/// plugin, as it becomes readable ([`pump`]): no thread of its own, which a descendant that
/// left the plugin's group (`setsid`) holding the pipe would keep waiting for ever.
struct Pipe<R> {
    pipe: Option<R>,
    got: Vec<u8>,
    max: usize,
}

impl<R: Read + AsFd> Pipe<R> {
    fn new(pipe: Option<R>, max: usize) -> Self {
        Pipe { pipe, got: Vec::new(), max }
    }

    /// Reads what is there (poll said so): the pipe is done at its end or an error.
    fn read(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else { return };
        let mut buf = [0u8; 8192];
        match pipe.read(&mut buf) {
            Ok(0) => self.pipe = None,
            Ok(n) => {
                let room = self.max.saturating_sub(self.got.len());
                self.got.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => self.pipe = None,
        }
    }
}

/// Waits up to `wait` for the pipes still open to have something (or to end), and reads it.
fn pump(out: &mut Pipe<ChildStdout>, err: &mut Pipe<ChildStderr>, wait: Duration) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = Timespec { tv_sec: 0, tv_nsec: i64::from(wait.subsec_nanos()) };
    let ready = {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2);
        let mut which = Vec::with_capacity(2);
        if let Some(p) = &out.pipe {
            fds.push(PollFd::new(p, PollFlags::IN));
            which.push(0);
        }
        if let Some(p) = &err.pipe {
            fds.push(PollFd::new(p, PollFlags::IN));
            which.push(1);
        }
        if fds.is_empty() {
            std::thread::sleep(wait);
            return;
        }
        if poll(&mut fds, Some(&timeout)).is_err() {
            return;
        }
        let ready: Vec<usize> =
            fds.iter().zip(&which).filter(|(f, _)| !f.revents().is_empty()).map(|(_, &w)| w).collect();
        ready
    };
    for w in ready {
        if w == 0 {
            out.read();
        } else {
            err.read();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).trim().to_owned();
    if text.is_empty() {
        "(empty)".into()
    } else {
        text
    }
}

/// The process groups of the plugin runs under way: a group of its own is out of reach of a
/// terminal's Ctrl-C, so [`kill_runs_under_way`] kills them as the server stops.
static UNDER_WAY: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn under_way() -> std::sync::MutexGuard<'static, Vec<i32>> {
    UNDER_WAY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A run's group in [`UNDER_WAY`] until the run ends.
struct UnderWay(i32);

impl UnderWay {
    fn new(child: &std::process::Child) -> Self {
        let group = rustix::process::Pid::from_child(child).as_raw_nonzero().get();
        under_way().push(group);
        UnderWay(group)
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        under_way().retain(|&g| g != self.0);
    }
}

/// Kills every exec plugin run under way, with what it started: the server is stopping, and
/// a run in its own process group would outlive it, hung for as long as it hangs (a plugin
/// waiting for a login in a browser). `msp_server::run` calls it as shutdown starts and once
/// serving has ended; an embedder that serves on its own calls it as it stops.
pub fn kill_runs_under_way() {
    use rustix::process::{kill_process_group, Pid, Signal};
    for &group in under_way().iter() {
        if let Some(group) = Pid::from_raw(group) {
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
}

/// Kills the plugin and its process group: what it started too, which would otherwise
/// outlive it holding its pipes (a `sleep` in a script), and keep a drain's thread each.
fn kill(child: &mut std::process::Child) {
    use rustix::process::{kill_process_group, Pid, Signal};
    let _ = kill_process_group(Pid::from_child(child), Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
    reap_orphans();
}

/// As PID 1 (the image runs us so, with no init), the plugin's orphans are ours to wait for:
/// each that has ended would stay a zombie for good. Runs are one at a time, and the one that
/// ran has been waited for, so any child that has ended is such an orphan.
fn reap_orphans() {
    use rustix::process::{wait, WaitOptions};
    if std::process::id() != 1 {
        return;
    }
    while let Ok(Some(_)) = wait(WaitOptions::NOHANG) {}
}

/// Runs the plugin (blocking) and reads its credential.
fn run(config: &ExecConfig, timeout: Duration) -> Result<Credential, ExecError> {
    let command = config.command.display().to_string();
    let mut cmd = Command::new(&config.command);
    // A group of its own, so that what it starts is killed with it (see `kill`).
    cmd.process_group(0)
        .args(&config.args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .env("KUBERNETES_EXEC_INFO", exec_info(config))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
        command: command.clone(),
        source,
        hint: config.install_hint.as_ref().map(|h| format!("\n{}", h.trim())).unwrap_or_default(),
    })?;
    // Until the run ends: it has been waited for by then, on every path.
    let _under_way = UnderWay::new(&child);
    let mut stdout = Pipe::new(child.stdout.take(), MAX_STDOUT + 1);
    let mut stderr = Pipe::new(child.stderr.take(), MAX_STDERR);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => pump(&mut stdout, &mut stderr, Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                kill(&mut child);
                // What it wrote before it was killed, as far as it is there.
                pump(&mut stdout, &mut stderr, Duration::from_millis(50));
                return Err(ExecError::Timeout { command, after: timeout, stderr: text(&stderr.got) });
            }
        }
    };
    // The process is gone; its pipes end unless it left children holding them. Both are
    // read to their end: reading stdout alone, an error sometimes said the stderr of a
    // plugin that had written one was empty.
    let deadline = Instant::now() + Duration::from_secs(1);
    while (stdout.pipe.is_some() || stderr.pipe.is_some()) && Instant::now() < deadline {
        pump(&mut stdout, &mut stderr, Duration::from_millis(5));
    }
    if stdout.pipe.is_some() || stderr.pipe.is_some() {
        // Children of its still hold the pipes a second later: not daemons (which let go of
        // them). Those in its group are killed; one that left it (`setsid`) keeps running,
        // but our ends of the pipes are closed as they are dropped, and nothing waits on it.
        kill(&mut child);
    }
    reap_orphans();
    if !status.success() {
        return Err(ExecError::Failed { command, status, stderr: text(&stderr.got) });
    }
    let output = stdout.got;
    let output_error = |message: String| ExecError::Output { command: command.clone(), message };
    if output.len() > MAX_STDOUT {
        return Err(output_error(format!("more than {MAX_STDOUT} bytes of output")));
    }
    parse(&output, &config.api_version, output_error)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredential {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    status: Option<ExecStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecStatus {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    expiration_timestamp: Option<String>,
}

/// Reads an `ExecCredential`. Errors never quote the output: it holds the token.
fn parse(output: &[u8], api_version: &str, error: impl Fn(String) -> ExecError) -> Result<Credential, ExecError> {
    let cred: ExecCredential = serde_json::from_slice(output).map_err(|e| {
        error(format!("the output is not an ExecCredential in JSON (line {}, column {})", e.line(), e.column()))
    })?;
    if cred.kind.as_deref() != Some("ExecCredential") {
        return Err(error(format!("the output's kind is {:?}, not \"ExecCredential\"", cred.kind.unwrap_or_default())));
    }
    if cred.api_version.as_deref() != Some(api_version) {
        return Err(error(format!(
            "the output's apiVersion is {:?}, but the kubeconfig asks for {api_version:?}",
            cred.api_version.unwrap_or_default()
        )));
    }
    let status = cred.status.ok_or_else(|| error("the output has no status".into()))?;
    let expires = match status.expiration_timestamp.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(
            parse_rfc3339(t)
                .ok_or_else(|| error(format!("status.expirationTimestamp {t:?} is not an RFC 3339 time")))?,
        ),
        None => None,
    };
    match status.token.filter(|t| !t.is_empty()) {
        Some(token) => {
            let token = Secret::bearer(token).map_err(|e| error(format!("status.token: {e}")))?;
            Ok(Credential { token, expires, obtained: Instant::now() })
        }
        None if status.client_certificate_data.is_some() || status.client_key_data.is_some() => Err(error(
            "gave a client certificate and key (status.clientCertificateData): not supported yet, only status.token"
                .into(),
        )),
        None => Err(error("the output has no status.token".into())),
    }
}

/// An RFC 3339 date-time (`2026-11-25T02:40:00Z`, a fraction and a numeric offset allowed).
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let ms = u64::try_from(msp_core::parse_rfc3339_ms(s)?).ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        let at = |s: &str| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).expect("after").as_secs());
        for (text, want) in [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2026-11-25T02:40:00Z", Some(1_795_574_400)),
            ("2026-11-25T02:40:00.123456Z", Some(1_795_574_400)),
            ("2026-11-25T04:40:00+02:00", Some(1_795_574_400)),
            ("2026-11-25T00:10:00-02:30", Some(1_795_574_400)),
            ("2000-02-29T12:00:00Z", Some(951_825_600)),
            ("2026-13-01T00:00:00Z", None),
            ("2026-11-25 02:40:00", None),
            ("2026-11-25T02:40:00", None),
            ("2026-11-25T02:40:00.Z", None),
            ("soon", None),
        ] {
            assert_eq!(at(text), want, "{text}");
        }
    }

    fn config(dir: &Path, script: &str) -> ExecConfig {
        let path = dir.join("plugin.sh");
        std::fs::write(&path, format!("#!/bin/bash\n{script}\n")).expect("script");
        let chmod = Command::new("chmod").arg("+x").arg(&path).status().expect("chmod");
        assert!(chmod.success());
        ExecConfig {
            api_version: API_VERSIONS[0].into(),
            command: path,
            args: vec!["--flag".into()],
            env: vec![("PLUGIN_ENV".into(), "from-kubeconfig".into())],
            cluster: Some(serde_json::json!({"server": "https://example.invalid"})),
            install_hint: None,
        }
    }

    /// A fresh directory for a test's plugin, removed when dropped.
    fn dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("msp-exec-{name}-")).tempdir().expect("dir")
    }

    #[test]
    fn runs_the_plugin_with_args_env_and_exec_info() {
        let scratch = dir("ok");
        let dir = scratch.path();
        let script = format!(
            r#"printf '%s\n' "$1" "$PLUGIN_ENV" "$KUBERNETES_EXEC_INFO" > {}/seen
echo '{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"tok-1","expirationTimestamp":"2999-01-01T00:00:00Z"}}}}'"#,
            dir.display()
        );
        let plugin = ExecPlugin::new(config(dir, &script));
        let token = async_std::task::block_on(plugin.token()).expect("token");
        assert_eq!(token.expose(), "tok-1");
        let seen = std::fs::read_to_string(dir.join("seen")).expect("seen");
        let lines: Vec<&str> = seen.lines().collect();
        assert_eq!(&lines[..2], ["--flag", "from-kubeconfig"]);
        let info: serde_json::Value = serde_json::from_str(lines[2]).expect("exec info");
        assert_eq!(info["kind"], "ExecCredential");
        assert_eq!(info["apiVersion"], "client.authentication.k8s.io/v1");
        assert_eq!(info["spec"]["interactive"], false);
        assert_eq!(info["spec"]["cluster"]["server"], "https://example.invalid");
        assert!(!format!("{plugin:?}").contains("tok-1"));
        assert!(!format!("{plugin:?}").contains("from-kubeconfig"), "env values are not printed");
    }

    #[test]
    fn errors_carry_stderr_and_never_the_output() {
        let scratch = dir("errors");
        let dir = scratch.path();
        let run = |script: &str, timeout: Duration| {
            let plugin = ExecPlugin::with_timeout(config(dir, script), timeout);
            async_std::task::block_on(plugin.token()).expect_err("fails").to_string()
        };
        let err = run("echo 'token expired, run aws sso login' >&2; exit 3", EXEC_TIMEOUT);
        assert!(err.contains("exit status: 3") && err.contains("run aws sso login"), "{err}");
        // 2 s, so that a busy machine starts bash and it writes within the time.
        let err = run("echo 'waiting for a browser' >&2; exec sleep 10", Duration::from_secs(2));
        assert!(err.contains("no answer within 2s") && err.contains("waiting for a browser"), "{err}");
        let err = run(
            r#"echo '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"sekrit"}}'"#,
            EXEC_TIMEOUT,
        );
        assert!(err.contains("asks for \"client.authentication.k8s.io/v1\"") && !err.contains("sekrit"), "{err}");
        let err = run(r#"echo '{"kind":"ExecCredential","status":"sekrit"'"#, EXEC_TIMEOUT);
        assert!(err.contains("not an ExecCredential") && !err.contains("sekrit"), "{err}");
        let err = run(
            r#"echo '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"clientCertificateData":"x","clientKeyData":"y"}}'"#,
            EXEC_TIMEOUT,
        );
        assert!(err.contains("not supported yet"), "{err}");
        let err = run(
            r#"printf '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"sekrit\\r\\nX-Injected: 1"}}'"#,
            EXEC_TIMEOUT,
        );
        assert!(err.contains("status.token") && err.contains("U+000D") && !err.contains("sekrit"), "{err}");
        let mut missing = config(dir, "true");
        missing.command = dir.join("no-such-plugin");
        missing.install_hint = Some("install it with: brew install no-such-plugin".into());
        let err = async_std::task::block_on(ExecPlugin::new(missing).token()).expect_err("missing").to_string();
        assert!(err.contains("could not start") && err.contains("brew install"), "{err}");
    }

    /// Whether a process whose command line holds `marker` is alive.
    fn running(marker: &str) -> bool {
        std::fs::read_dir("/proc").expect("/proc").flatten().any(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
    }

    #[test]
    fn a_plugin_killed_at_its_timeout_takes_what_it_started_with_it() {
        let scratch = dir("group");
        let dir = scratch.path();
        // A sleep the script starts and leaves holding its pipes, marked by this process.
        let marker = format!("1000.{}", std::process::id());
        let plugin =
            ExecPlugin::with_timeout(config(dir, &format!("sleep {marker} &\nsleep {marker}")), Duration::from_secs(1));
        let err = async_std::task::block_on(plugin.token()).expect_err("times out").to_string();
        assert!(err.contains("no answer within 1s"), "{err}");
        let gone = Instant::now() + Duration::from_secs(5);
        while running(&marker) && Instant::now() < gone {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running(&marker), "the plugin's children were killed with it");
    }

    #[test]
    fn children_left_holding_the_output_after_the_plugin_exits_are_killed() {
        let scratch = dir("leftover");
        let dir = scratch.path();
        let marker = format!("1001.{}", std::process::id());
        let script = format!(
            r#"sleep {marker} &
echo '{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"t"}}}}'"#
        );
        let plugin = ExecPlugin::new(config(dir, &script));
        let token = async_std::task::block_on(plugin.token()).expect("its credential, all the same");
        assert_eq!(token.expose(), "t");
        let gone = Instant::now() + Duration::from_secs(5);
        while running(&marker) && Instant::now() < gone {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running(&marker), "the sleep holding its stdout was killed");
    }

    /// The pid of the process whose command line holds `marker`, if one is alive.
    fn pid_of(marker: &str) -> Option<i32> {
        std::fs::read_dir("/proc").expect("/proc").flatten().find_map(|p| {
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline).contains(marker).then(|| p.file_name().to_str()?.parse().ok())?
        })
    }

    #[test]
    fn a_descendant_that_left_the_group_holding_the_output_keeps_no_pipe_of_ours_open() {
        let scratch = dir("setsid");
        let dir = scratch.path();
        let marker = format!("1002.{}", std::process::id());
        let script = format!(
            r#"setsid sleep {marker} &
echo '{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"t"}}}}'"#
        );
        let plugin = ExecPlugin::new(config(dir, &script));
        let token = async_std::task::block_on(plugin.token()).expect("its credential, all the same");
        assert_eq!(token.expose(), "t");
        // The sleep is out of reach (a session of its own), and holds the write end of the
        // plugin's stdout; our read end is closed, so no thread or descriptor of ours waits.
        let started = Instant::now() + Duration::from_secs(5);
        let sleeper = loop {
            match pid_of(&marker) {
                Some(pid) => break pid,
                None if Instant::now() < started => std::thread::sleep(Duration::from_millis(20)),
                None => panic!("the sleep never started"),
            }
        };
        let held = std::fs::read_link(format!("/proc/{sleeper}/fd/1")).expect("its stdout");
        let ours: Vec<PathBuf> = std::fs::read_dir("/proc/self/fd")
            .expect("fds")
            .flatten()
            .filter_map(|f| std::fs::read_link(f.path()).ok())
            .collect();
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(sleeper).expect("a pid"),
            rustix::process::Signal::KILL,
        );
        assert!(held.to_string_lossy().starts_with("pipe:"), "{held:?}");
        assert!(!ours.contains(&held), "{held:?} is still open here");
    }

    #[test]
    fn callers_that_waited_for_a_run_that_failed_get_its_error_not_a_run_each() {
        let scratch = dir("failing");
        let dir = scratch.path();
        let counter = dir.join("runs");
        let _ = std::fs::remove_file(&counter);
        let script = format!("echo run >> {}\nsleep 1\necho 'no credentials' >&2\nexit 1", counter.display());
        let plugin = ExecPlugin::new(config(dir, &script));
        let runs = || std::fs::read_to_string(&counter).map(|c| c.lines().count()).unwrap_or(0);
        async_std::task::block_on(async {
            // Three requests give up while the first run is under way, a fourth waits.
            for _ in 0..3 {
                let gave_up = async_std::future::timeout(Duration::from_millis(100), plugin.token()).await;
                assert!(gave_up.is_err());
            }
            let err = plugin.token().await.expect_err("the run failed").to_string();
            assert!(err.contains("no credentials") && err.contains("the run this request waited for"), "{err}");
            // The tasks of those that gave up have had their turn by now: none ran it again.
            async_std::task::sleep(Duration::from_millis(300)).await;
            assert_eq!(runs(), 1, "one run for all of them");
            let err = plugin.token().await.expect_err("fails again").to_string();
            assert!(err.contains("exit status: 1") && !err.contains("waited for"), "{err}");
        });
        assert_eq!(runs(), 2, "a request after the failure runs it again");
    }

    #[test]
    fn a_caller_that_stops_waiting_leaves_the_run_to_the_next() {
        let scratch = dir("flight");
        let dir = scratch.path();
        let counter = dir.join("runs");
        let _ = std::fs::remove_file(&counter);
        let script = format!(
            r#"echo run >> {}
sleep 1.5
echo '{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"t"}}}}'"#,
            counter.display()
        );
        let plugin = ExecPlugin::new(config(dir, &script));
        async_std::task::block_on(async {
            // A request's deadline, shorter than the plugin takes: it gives up, dropping the call.
            let gave_up = async_std::future::timeout(Duration::from_millis(300), plugin.token()).await;
            assert!(gave_up.is_err());
            assert_eq!(plugin.token().await.expect("the same run's").expose(), "t");
        });
        let runs = std::fs::read_to_string(&counter).map(|c| c.lines().count()).unwrap_or(0);
        assert_eq!(runs, 1, "one run, not one a caller");
    }

    #[test]
    fn the_credential_is_kept_until_it_expires_or_a_401() {
        let scratch = dir("cache");
        let dir = scratch.path();
        let counter = dir.join("runs");
        let _ = std::fs::remove_file(&counter);
        // Valid for 5 s: inside the 10 s margin, so every call runs the plugin again.
        let script = |expires: &str| {
            format!(
                r#"echo run >> {}
echo '{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"t","expirationTimestamp":"'$(date -u -d @$(( $(date +%s) + {expires} )) +%Y-%m-%dT%H:%M:%SZ)'"}}}}'"#,
                counter.display()
            )
        };
        let runs = || std::fs::read_to_string(&counter).map(|c| c.lines().count()).unwrap_or(0);
        let plugin = ExecPlugin::new(config(dir, &script("5")));
        async_std::task::block_on(async {
            plugin.token().await.expect("one");
            plugin.token().await.expect("two");
        });
        assert_eq!(runs(), 2, "an almost expired credential is not kept");
        let plugin = ExecPlugin::new(config(dir, &script("600")));
        async_std::task::block_on(async {
            let before = Instant::now();
            plugin.token().await.expect("one");
            plugin.token().await.expect("kept");
            assert_eq!(runs(), 3, "kept while valid");
            plugin.invalidate(before).await;
            plugin.token().await.expect("still kept");
            assert_eq!(runs(), 3, "a 401 to a request older than the credential changes nothing");
            plugin.invalidate(Instant::now()).await;
            plugin.token().await.expect("again");
            assert_eq!(runs(), 4, "a 401 with it runs the plugin again");
        });
    }
}
