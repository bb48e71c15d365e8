//! Bearer tokens: fixed, or read from a file and re-read, since bound service-account
//! tokens rotate (hourly by default). The token is a [`Secret`]: it never prints.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::exec::{ExecError, ExecPlugin};

/// How often a token file is re-read even without a 401.
pub const REREAD_EVERY: Duration = Duration::from_secs(60);

/// A bearer token: a string that never appears in `Debug` or `Display` output, and that
/// can be sent in an `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Why a token cannot be sent. Says where and what, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    /// It is empty.
    #[error("the token is empty")]
    Empty,
    /// It holds a character an HTTP header cannot carry (not ASCII, or a control
    /// character such as a line break).
    #[error(
        "the token holds {found} at byte {at}, which an HTTP header cannot carry (a token is printable ASCII){hint}"
    )]
    Character {
        /// The byte offset of the character.
        at: usize,
        /// The character, as `U+XXXX`.
        found: String,
        /// A likely cause, prefixed with "; ", or empty.
        hint: &'static str,
    },
}

impl Secret {
    /// Checks a bearer token: not empty, and nothing but printable ASCII and spaces, so
    /// that it can go in a header as it is. (The HTTP client would panic on a character
    /// that is not ASCII, and a line break would end the header early.)
    pub fn bearer(s: impl Into<String>) -> Result<Self, InvalidToken> {
        let s = s.into();
        if s.is_empty() {
            return Err(InvalidToken::Empty);
        }
        if let Some((at, c)) = s.char_indices().find(|&(_, c)| !(c == ' ' || c.is_ascii_graphic())) {
            let hint = match c {
                '\u{feff}' => "; a byte-order mark, written by some editors",
                '\n' | '\r' => "; a line break: more than one line in the file?",
                _ => "",
            };
            return Err(InvalidToken::Character { at, found: format!("U+{:04X}", u32::from(c)), hint });
        }
        Ok(Secret(s))
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

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// It could not be read.
    #[error("reading token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// What it holds cannot be sent as a bearer token.
    #[error("token file {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with the token.
        source: InvalidToken,
    },
}

/// A token file, re-read every [`REREAD_EVERY`] and on demand; a failed re-read keeps the
/// token it had.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    state: Mutex<(Secret, Instant)>,
}

fn read(path: &Path) -> Result<Secret, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read { path: path.to_owned(), source })?;
    Secret::bearer(text.trim()).map_err(|source| TokenError::Invalid { path: path.to_owned(), source })
}

impl TokenFile {
    /// Reads the file once; it must be readable, and hold a usable token, at start.
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

    /// Re-reads now (after a 401). Keeps the old token if the file can't be read or holds
    /// no usable token (emptied, half-written), as client-go's cached token file does.
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
        let s = Secret::bearer("sekrit-token").expect("a token");
        assert!(!format!("{s:?}").contains("sekrit"));
        let auth = Auth::Token(s);
        assert!(!format!("{auth:?}").contains("sekrit"));
    }

    #[test]
    fn reload_picks_up_rotation_and_survives_a_missing_file() {
        let scratch = tempfile::tempdir().expect("dir");
        let dir = scratch.path();
        let path = dir.join("token");
        std::fs::write(&path, "token-one\n").expect("write");
        let file = TokenFile::open(&path).expect("open");
        assert_eq!(file.token().expose(), "token-one");
        std::fs::write(&path, "token-two").expect("write");
        assert_eq!(file.token().expose(), "token-one", "not re-read before REREAD_EVERY");
        file.reload();
        assert_eq!(file.token().expose(), "token-two");
        std::fs::remove_file(&path).expect("rm");
        file.reload();
        assert_eq!(file.token().expose(), "token-two", "a failed re-read keeps the token");
        // The path is printed, and a temporary directory's name could spell a token.
        let shown = format!("{file:?}").replace(&format!("{path:?}"), "<path>");
        assert!(shown.contains("<path>") && !shown.contains("token-two"), "{shown}");
    }

    #[test]
    fn tokens_that_cannot_be_sent_are_refused() {
        for (token, at) in [("\u{feff}abc", 0), ("abc\r\nX-Injected: 1", 3), ("ab\u{a0}c", 2), ("a\0b", 1), ("a\tb", 1)]
        {
            match Secret::bearer(token) {
                Err(InvalidToken::Character { at: got, .. }) => assert_eq!(got, at, "{token:?}"),
                other => panic!("{token:?}: {other:?}"),
            }
        }
        assert_eq!(Secret::bearer(""), Err(InvalidToken::Empty));
        let bom = Secret::bearer("\u{feff}sekrit").expect_err("a BOM").to_string();
        assert!(bom.contains("U+FEFF") && bom.contains("byte-order mark") && !bom.contains("sekrit"), "{bom}");
        for token in ["eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "abcdef.0123456789abcdef", "a b~+/="] {
            assert_eq!(Secret::bearer(token).expect(token).expose(), token);
        }
    }

    #[test]
    fn a_token_file_that_cannot_be_sent_is_refused_at_start_and_kept_past_on_reload() {
        let scratch = tempfile::tempdir().expect("dir");
        let dir = scratch.path();
        let path = dir.join("token");
        std::fs::write(&path, "\u{feff}sekrit\n").expect("write");
        let e = TokenFile::open(&path).expect_err("a BOM");
        assert!(matches!(e, TokenError::Invalid { source: InvalidToken::Character { at: 0, .. }, .. }), "{e:?}");
        assert!(!e.to_string().contains("sekrit"), "{e}");
        std::fs::write(&path, "good\n").expect("write");
        let file = TokenFile::open(&path).expect("open");
        for bad in ["", "\n", "caf\u{e9}", "one\ntwo"] {
            std::fs::write(&path, bad).expect("write");
            file.reload();
            assert_eq!(file.token().expose(), "good", "{bad:?} keeps the token");
        }
    }
}
