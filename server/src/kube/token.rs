//! Bearer tokens: fixed, or read from a file and re-read, since bound service-account
//! tokens rotate (hourly by default). The token is a [`Secret`]: it never prints.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::exec::{ExecError, ExecPlugin};

/// How often a token file is re-read even without a 401.
pub const REREAD_EVERY: Duration = Duration::from_secs(60);

/// A string that never appears in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that needs it (the `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a token file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading token file {path}: {source}")]
pub struct TokenError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// A token file, re-read every [`REREAD_EVERY`] and on demand; a failed re-read keeps the
/// token it had.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    state: Mutex<(Secret, Instant)>,
}

fn read(path: &Path) -> Result<Secret, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError { path: path.to_owned(), source })?;
    Ok(Secret(text.trim().to_owned()))
}

impl TokenFile {
    /// Reads the file once; it must be readable at start.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TokenError> {
        let path = path.into();
        let token = read(&path)?;
        Ok(TokenFile { path, state: Mutex::new((token, Instant::now())) })
    }

    /// The current token, re-read if it is older than [`REREAD_EVERY`].
    pub fn token(&self) -> Secret {
        let stale = self.state.lock().map(|s| s.1.elapsed() >= REREAD_EVERY).unwrap_or(true);
        if stale {
            self.reload();
        }
        self.state.lock().map(|s| s.0.clone()).unwrap_or_else(|p| p.into_inner().0.clone())
    }

    /// Re-reads now (after a 401). Keeps the old token if the file can't be read.
    pub fn reload(&self) {
        let fresh = read(&self.path);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match fresh {
            Ok(token) => *state = (token, Instant::now()),
            Err(e) => {
                log::warn!("{e}; keeping the previous token");
                state.1 = Instant::now();
            }
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How requests authenticate (beyond a TLS client certificate).
#[derive(Debug)]
pub enum Auth {
    /// No `Authorization` header.
    None,
    /// A fixed bearer token (kubeconfig `token`).
    Token(Secret),
    /// A bearer token from a file.
    File(TokenFile),
    /// A bearer token from a kubeconfig exec plugin.
    Exec(ExecPlugin),
}

impl Auth {
    /// The bearer token to send, if any, without running anything: an exec plugin's only
    /// if it has run.
    pub fn bearer(&self) -> Option<Secret> {
        match self {
            Auth::None => None,
            Auth::Token(t) => Some(t.clone()),
            Auth::File(f) => Some(f.token()),
            Auth::Exec(plugin) => plugin.kept(),
        }
    }

    /// The bearer token to send, if any, running the exec plugin when its credential is
    /// missing or expired.
    pub async fn token(&self) -> Result<Option<Secret>, ExecError> {
        match self {
            Auth::Exec(plugin) => plugin.token().await.map(Some),
            _ => Ok(self.bearer()),
        }
    }

    /// After a 401 to a request sent at `sent`: re-reads a token file, or makes the exec
    /// plugin run again; returns whether a retry may help.
    pub async fn refresh(&self, sent: Instant) -> bool {
        match self {
            Auth::File(f) => {
                f.reload();
                true
            }
            Auth::Exec(plugin) => {
                plugin.invalidate(sent).await;
                true
            }
            Auth::None | Auth::Token(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("sekrit-token");
        assert!(!format!("{s:?}").contains("sekrit"));
        let auth = Auth::Token(s);
        assert!(!format!("{auth:?}").contains("sekrit"));
    }

    #[test]
    fn reload_picks_up_rotation_and_survives_a_missing_file() {
        let dir = std::env::temp_dir().join(format!("msp-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token");
        std::fs::write(&path, "one\n").expect("write");
        let file = TokenFile::open(&path).expect("open");
        assert_eq!(file.token().expose(), "one");
        std::fs::write(&path, "two").expect("write");
        assert_eq!(file.token().expose(), "one", "not re-read before REREAD_EVERY");
        file.reload();
        assert_eq!(file.token().expose(), "two");
        std::fs::remove_file(&path).expect("rm");
        file.reload();
        assert_eq!(file.token().expose(), "two", "a failed re-read keeps the token");
        assert!(!format!("{file:?}").contains("two"));
    }
}
