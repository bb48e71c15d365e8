//! A watch's lines, as they arrive: each bounded in length, and the watch in its silence
//! ([`Silence`]); and the event each line says.

use std::time::{Duration, Instant};

use futures_lite::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use msp_core::WatchEvent;

use super::silence::Silence;
use super::{count, WatchErrors};
use crate::kube::{KubeClient, KubeError};

/// The longest watch line (one event) accepted: Kubernetes objects are at most 1.5 MiB in
/// etcd by default, so this leaves room while bounding what one line can cost.
const MAX_WATCH_LINE: usize = 16 * 1024 * 1024;

/// A watch's lines, each at most the response bound (and [`MAX_WATCH_LINE`]).
pub(super) struct Lines {
    reader: BufReader<surf::Response>,
    line: String,
    bound: usize,
    /// Whether the bound is `kubernetes.max_response_bytes` (else [`MAX_WATCH_LINE`]).
    bound_is_setting: bool,
    pub(super) path: String,
    silence: Silence,
}

impl Lines {
    pub(super) fn new(res: surf::Response, client: &KubeClient, path: &str) -> Self {
        let setting = client.limits().max_response_bytes;
        let bound = setting.min(MAX_WATCH_LINE);
        Lines {
            reader: BufReader::new(res),
            line: String::new(),
            bound,
            bound_is_setting: bound == setting,
            path: path.to_owned(),
            silence: Silence::new(),
        }
    }

    /// The next line (`None`: the server ended the watch), if it comes within `silence`. A
    /// line that is not UTF-8 (which no API server sends: Go's encoder writes U+FFFD) is
    /// counted as undecodable and skipped, as one that is not JSON is: it says nothing of
    /// the connection, and a fresh list would not get past it.
    pub(super) async fn next(
        &mut self,
        silence: Duration,
        resource: &'static str,
        errors: &WatchErrors,
    ) -> Result<Option<&str>, KubeError> {
        loop {
            // The last line's room, read into as bytes, and checked once as it becomes text.
            let mut buf = std::mem::take(&mut self.line).into_bytes();
            buf.clear();
            if !self.read(&mut buf, silence, resource, errors).await? {
                return Ok(None);
            }
            match String::from_utf8(buf) {
                Ok(line) => {
                    self.line = line;
                    return Ok(Some(self.line.trim_end()));
                }
                Err(_) => {
                    log::warn!(resource = resource; "{resource} watch: skipping a line that is not UTF-8");
                    count(errors, resource, "undecodable", 1);
                }
            }
        }
    }

    /// Reads the next line into `buf`: false when the server ended the watch.
    async fn read(
        &mut self,
        buf: &mut Vec<u8>,
        silence: Duration,
        resource: &'static str,
        errors: &WatchErrors,
    ) -> Result<bool, KubeError> {
        // Past what an `Instant` can say, never (as a timeout's timer).
        let due = Instant::now().checked_add(silence);
        let Lines { reader, silence: timer, .. } = self;
        let mut bounded = reader.take(self.bound as u64 + 1);
        let read = bounded.read_until(b'\n', buf);
        futures_lite::pin!(read);
        let Some(read) = timer.within(due, read).await else {
            return Err(KubeError::Timeout {
                path: self.path.clone(),
                after: silence,
                bound: "a watch says at least a bookmark within this",
            });
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                count(errors, resource, "read", 1);
                return Err(KubeError::Transport { path: self.path.clone(), source: e.into() });
            }
        };
        if n == 0 {
            return Ok(false);
        }
        if n > self.bound {
            count(errors, resource, "line_too_long", 1);
            let (path, limit) = (self.path.clone(), self.bound);
            return Err(if self.bound_is_setting {
                KubeError::TooLarge { path, limit }
            } else {
                KubeError::EventTooLarge { path, limit }
            });
        }
        Ok(true)
    }
}

/// A watch line's event; one that is none is logged, counted, and skipped (`None`).
pub(super) fn decode<'l>(line: &'l str, resource: &'static str, errors: &WatchErrors) -> Option<WatchEvent<'l>> {
    serde_json::from_str(line)
        .map_err(|e| {
            log::warn!(resource = resource; "{resource} watch: skipping an undecodable line: {e}");
            count(errors, resource, "undecodable", 1);
        })
        .ok()
}
