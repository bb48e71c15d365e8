//! HTTP/1.0 and HTTP/1.1 for one connection, in front of a tide app: what async-h1's server
//! did not do for us.
//!
//! - HTTP/1.0 requests are answered (HAProxy's default health check is one), and the
//!   connection closed unless the client asked to keep it alive.
//! - Pipelined requests are answered in order: requests are read one after another from
//!   one buffered reader, and each answer is written before the next is read.
//! - Bounds, answered with a status rather than a silent close: a request line over
//!   [`Limits::request_line`] gets 414, headers over [`Limits::headers`] (or too many) get
//!   431, anything that is not HTTP gets 400 (so do a `Host` that is more than a host and
//!   port, none in HTTP/1.1, `Content-Length`s that disagree or are not digits, and a bare
//!   CR), a method not in capitals 501, another HTTP version 505, a request body we do not
//!   take (chunked, or over [`Limits::body`]) 501 or 413, an `Expect` other than
//!   `100-continue` 417 (that one gets `100 Continue`).
//! - A control byte in the target, or a control byte but tab in a header value, gets 400,
//!   as from Go's servers; so does a `#` in the target (Go's take it as part of the path).
//!   A header value past ASCII (obs-text) gets 400 too, but in a header nothing here reads
//!   ([`LEFT_OUT`]: `User-Agent`, `Cookie`...), which is left out. `OPTIONS *` gets 200, as
//!   from Go's servers.
//! - Timeouts: a request head must arrive within [`Limits::head`] once started, an idle
//!   keep-alive connection is closed after [`Limits::idle`], and every 64 KiB written must
//!   go within [`Limits::write`], so a client that never reads cannot hold its response
//!   forever. A connection whose client has taken nothing of a write for [`STALLED`] may be
//!   closed for room, as an idle one may (see `waiting.rs`).
//! - A response whose body is marked [`Evictable`] is abandoned as soon as it is evicted
//!   (a new request past the bounds on scrapes or bodies, and its client stalled or its body
//!   written long; see `flight.rs`), and the connection closed, as it is when reading a body fails: a body
//!   cut short must not read as a whole one. (Over HTTP/1.0, whose body ends with the
//!   connection, the client cannot tell; gzip's trailer and OpenMetrics' `# EOF` still do.)
//!   The write timeout also bounds how long a body's writer takes to produce a piece.
//! - Writes go through a 64 KiB buffer, so TCP sees large writes.

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use http_types::headers::{HeaderName, HeaderValue};
use http_types::{Method, Request, Response, StatusCode, Url, Version};

use crate::waiting::Place;

/// Bounds on what one connection may send and how slowly.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest request line, in bytes.
    pub request_line: usize,
    /// All header lines together, in bytes.
    pub headers: usize,
    /// How many header lines.
    pub header_count: usize,
    /// The largest request body taken. Our routes take none; a body is read as it arrives
    /// (so a connection holds no more than was sent), up to this.
    pub body: usize,
    /// Time for a whole request head, from its first byte.
    pub head: Duration,
    /// Time an idle keep-alive connection is kept.
    pub idle: Duration,
    /// Time any one write may take.
    pub write: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 8 * 1024,
            headers: 64 * 1024,
            header_count: 100,
            body: 64 * 1024,
            head: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            write: Duration::from_secs(30),
        }
    }
}

/// Set on a response body that may be abandoned mid-write (see `flight.rs`).
#[derive(Debug, Clone, Default)]
pub struct Evictable(pub crate::flight::Evicted);

/// Why a request head could not be read.
#[derive(Debug)]
enum HeadError {
    /// The connection ended or failed: nothing to answer.
    Gone,
    /// Answer with this status, then close.
    Refuse(StatusCode, &'static str),
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The comma-separated elements of every line of the list header `name` (RFC 9110 5.3:
    /// two lines are one list).
    fn elements<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(|e| e.trim_matches([' ', '\t']))
            .filter(|e| !e.is_empty())
    }

    /// Whether the connection stays open after this request: `close` anywhere ends it.
    fn keep_alive(&self) -> bool {
        let has = |token: &str| self.elements("Connection").any(|t| t.eq_ignore_ascii_case(token));
        match self.version {
            Version::Http1_0 => has("keep-alive") && !has("close"),
            _ => !has("close"),
        }
    }
}

/// Reads one line (up to `\n`) of at most `limit` bytes; `Ok(None)` at a clean end of input.
async fn read_line<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
    too_long: (StatusCode, &'static str),
) -> Result<Option<()>, HeadError> {
    buf.clear();
    let n = (&mut *reader).take(limit as u64 + 1).read_until(b'\n', buf).await.map_err(|_| HeadError::Gone)?;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return if n > limit { Err(HeadError::Refuse(too_long.0, too_long.1)) } else { Err(HeadError::Gone) };
    }
    buf.pop();
    if buf.ends_with(b"\r") {
        buf.pop();
    }
    // A CR anywhere else is a bare one, which a recipient must take as invalid (RFC 9112 2.2).
    if buf.contains(&b'\r') {
        return Err(HeadError::Refuse(StatusCode::BadRequest, "malformed request\n"));
    }
    Ok(Some(()))
}

/// The headers nothing here reads: those that only describe the client (RFC 9110 10.1),
/// and `Cookie` (a browser on the landing page may send another local app's). One past
/// ASCII is left out, not refused.
const LEFT_OUT: [&str; 4] = ["User-Agent", "Referer", "From", "Cookie"];

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Reads a request head; `Ok(None)` when the client closed the connection between requests.
async fn read_head<R: AsyncBufReadExt + Unpin>(reader: &mut R, limits: &Limits) -> Result<Option<Head>, HeadError> {
    const BAD: (StatusCode, &str) = (StatusCode::BadRequest, "malformed request\n");
    let mut line = Vec::with_capacity(256);
    let too_long = (StatusCode::UriTooLong, "request line too long\n");
    // Clients may send empty lines before a request (RFC 9112 2.2).
    loop {
        if read_line(reader, &mut line, limits.request_line, too_long).await?.is_none() {
            return Ok(None);
        }
        if !line.is_empty() {
            break;
        }
    }
    let request_line = std::str::from_utf8(&line).map_err(|_| HeadError::Refuse(BAD.0, BAD.1))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Refuse(BAD.0, BAD.1));
    };
    // No control byte, and no fragment, in a target (RFC 9112 3.2): the URL parser would
    // drop a trailing NUL or tab and route `/metrics\0` to /metrics, past a proxy's path
    // rule, where Go's servers answer 400.
    let clean = |t: &str| !t.bytes().any(|b| b.is_ascii_control() || b == b'#');
    if !is_token(method) || target.is_empty() || !clean(target) || !version.starts_with("HTTP/") {
        return Err(HeadError::Refuse(BAD.0, BAD.1));
    }
    let version = match version {
        "HTTP/1.1" => Version::Http1_1,
        "HTTP/1.0" => Version::Http1_0,
        _ => return Err(HeadError::Refuse(StatusCode::HttpVersionNotSupported, "only HTTP/1.0 and HTTP/1.1\n")),
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    let (mut total, mut lines) = (0, 0);
    let too_large = (StatusCode::RequestHeaderFieldsTooLarge, "request headers too large\n");
    loop {
        let left = limits.headers.saturating_sub(total);
        if read_line(reader, &mut line, left, too_large).await?.is_none() {
            return Err(HeadError::Gone);
        }
        total += line.len() + 2;
        if line.is_empty() {
            break;
        }
        // Every line counts, those left out below too.
        lines += 1;
        if lines > limits.header_count {
            return Err(HeadError::Refuse(too_large.0, too_large.1));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { return Err(HeadError::Refuse(BAD.0, BAD.1)) };
        let (name, value) = (std::str::from_utf8(&line[..colon]).unwrap_or(""), &line[colon + 1..]);
        // No whitespace before the colon, no obsolete line folding (RFC 9112 5). No
        // control byte but a tab in a value (RFC 9110 5.5; NUL is as dangerous as CR and
        // LF), as Go's servers refuse them.
        if !is_token(name) || value.iter().any(|&b| b != b'\t' && b.is_ascii_control()) {
            return Err(HeadError::Refuse(BAD.0, BAD.1));
        }
        match std::str::from_utf8(value).ok().filter(|v| v.is_ascii()) {
            Some(value) => headers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned())),
            // Bytes past ASCII (obs-text, or UTF-8), which our header values cannot hold
            // (Go's servers keep them): a header that nothing here reads is left
            // out; any other is refused, since its absence may mean more than its presence
            // (a second `Authorization` would count instead of it).
            None if LEFT_OUT.iter().any(|f| name.eq_ignore_ascii_case(f)) => {}
            None => return Err(HeadError::Refuse(BAD.0, BAD.1)),
        }
    }
    Ok(Some(Head { method, target, version, headers }))
}

/// Whether `host` is a `Host` header's value: a host (a name, an IPv4 address or a
/// bracketed IPv6 one) with an optional port, and nothing else: no user, path, query or
/// fragment (RFC 9110 7.2, RFC 3986 3.2.2).
fn is_authority(host: &str) -> bool {
    host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// The request's host: its one `Host` header, which must be a host and port and nothing
/// else, and is needed in HTTP/1.1 (`localhost` where HTTP/1.0 sends none).
fn host(head: &Head) -> Result<&str, (StatusCode, &'static str)> {
    const BAD: (StatusCode, &str) = (StatusCode::BadRequest, "malformed request\n");
    let mut hosts = head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("Host"));
    let host = match hosts.next() {
        Some((_, host)) if !host.is_empty() => host.as_str(),
        Some(_) => "localhost",
        // HTTP/1.1 requires one, whatever the target's form (RFC 9112 3.2).
        None if head.version == Version::Http1_1 => return Err(BAD),
        None => "localhost",
    };
    // One Host, and only a host and port (RFC 9112 3.2): `x/metrics#` would otherwise
    // become part of the URL, and route `GET /healthz` to /metrics.
    if hosts.next().is_some() || !is_authority(host) {
        return Err(BAD);
    }
    Ok(host)
}

/// The request for `head`, with its `body`.
fn request(head: &Head, body: Vec<u8>, scheme: &str) -> Result<Request, (StatusCode, &'static str)> {
    const BAD: (StatusCode, &str) = (StatusCode::BadRequest, "malformed request\n");
    // Methods are case-sensitive (RFC 9110 9.1): `get` is not GET.
    let method = Method::from_str(&head.method)
        .ok()
        .filter(|m| m.to_string() == head.method)
        .ok_or((StatusCode::NotImplemented, "method not implemented\n"))?;
    let host = host(head)?;
    let url = if head.target.starts_with('/') {
        Url::parse(&format!("{scheme}://{host}{}", head.target)).map_err(|_| BAD)?
    } else if head.target.starts_with("http://") || head.target.starts_with("https://") {
        Url::parse(&head.target).map_err(|_| BAD)?
    } else {
        return Err(BAD);
    };
    let mut req = Request::new(method, url);
    req.set_version(Some(head.version));
    for (name, value) in &head.headers {
        let name = HeaderName::from_str(name).map_err(|_| BAD)?;
        let value = HeaderValue::from_str(value).map_err(|_| BAD)?;
        req.append_header(name, value);
    }
    req.set_body(body);
    Ok(req)
}

/// Everything that goes wrong while writing: the connection is dropped.
#[derive(Debug)]
struct WriteFailed;

/// How long a write may wait for its client to take any of it before the connection may be
/// closed for room, as one waiting for a request may: a client that stops reading is no
/// better than an idle one (an adversarial trial held every connection with requests it
/// never read the answers to, and kept Prometheus out). A client that takes some bytes
/// within it, however few, keeps its connection (see [`write_to`]).
const STALLED: Duration = Duration::from_secs(1);

/// Why a guarded operation did not finish.
enum Stopped {
    Evicted,
    ClosedForRoom,
}

/// Runs one write `op`: it must finish within `timeout`, and stops once `evict` is set. When
/// it is a write to the client (`place`), the connection is closable for room while it has
/// waited [`STALLED`] or more, counted from when it began.
async fn guarded<T>(
    timeout: Duration,
    evict: Option<&Evictable>,
    place: Option<&Place>,
    op: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, WriteFailed> {
    let began = std::time::Instant::now();
    let evicted = async {
        let Some(evict) = evict else { return std::future::pending().await };
        evict.0.wait().await;
    };
    let stalled = async {
        let Some(place) = place else { return std::future::pending().await };
        async_std::task::sleep(STALLED).await;
        place.wait_since(began);
        place.closed().await;
    };
    let timed = async_std::future::timeout(timeout, op);
    let stopped = futures_lite::future::or(
        async {
            evicted.await;
            Stopped::Evicted
        },
        async {
            stalled.await;
            Stopped::ClosedForRoom
        },
    );
    let outcome = futures_lite::future::or(async { Ok(timed.await) }, async { Err(stopped.await) }).await;
    // Answering again, unless it was closed meanwhile.
    if place.is_some_and(|p| !p.resume()) {
        log::debug!("connection: closed for room while its client was not reading");
        return Err(WriteFailed);
    }
    match outcome {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(_))) => Err(WriteFailed),
        Ok(Err(_)) => {
            log::debug!("connection: a write made no progress within {timeout:?}; closing");
            Err(WriteFailed)
        }
        Err(Stopped::Evicted) => {
            log::debug!("connection: response abandoned (evicted for a new request: its client stalled, or its body was written long)");
            Err(WriteFailed)
        }
        // Logged above: a connection closed for room answers nothing more.
        Err(Stopped::ClosedForRoom) => Err(WriteFailed),
    }
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason()
}

/// Writes `res` (headers, then the body unless `head_only`); `close`: say so and end after.
/// Returns whether the connection must close after it: asked to, or a body whose end is the
/// connection's (HTTP/1.0 without a length).
async fn write_response<W: AsyncWrite + Unpin>(
    out: &mut BufWriter<W>,
    mut res: Response,
    version: Version,
    head_only: bool,
    close: bool,
    timeout: Duration,
    place: &Place,
) -> Result<bool, WriteFailed> {
    let place = Some(place);
    let evict = res.ext().get::<Evictable>().cloned();
    let evict = evict.as_ref();
    let len = res.len();
    let chunked = len.is_none() && version == Version::Http1_1 && !head_only;
    let status = res.status();
    let mut head = format!(
        "{} {} {}\r\n",
        if version == Version::Http1_0 { "HTTP/1.0" } else { "HTTP/1.1" },
        u16::from(status),
        reason(status)
    );
    for (name, values) in res.iter() {
        let lower = name.as_str().to_ascii_lowercase();
        if matches!(lower.as_str(), "content-length" | "transfer-encoding" | "connection") {
            continue;
        }
        for value in values.iter() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    // An origin server with a clock sends one (RFC 9110 6.6.1), as Go's do.
    if res.header("date").is_none() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        head.push_str(&format!("date: {}\r\n", msp_core::format_http_date(now)));
    }
    if let Some(len) = len {
        head.push_str(&format!("content-length: {len}\r\n"));
    } else if chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    }
    // Without a length or chunking (HTTP/1.0), the end of the body is the end of the connection.
    let close = close || (len.is_none() && !chunked && !head_only);
    head.push_str(if close {
        "connection: close\r\n\r\n"
    } else if version == Version::Http1_0 {
        "connection: keep-alive\r\n\r\n"
    } else {
        "\r\n"
    });
    guarded(timeout, evict, place, out.write_all(head.as_bytes())).await?;
    if !head_only {
        let mut body = res.take_body();
        // A chunk's size line, its data and its end, gathered into one write: written apart,
        // each chunk cost the socket a write of a few bytes besides its data.
        let mut frame = Vec::new();
        // With a length, no more than it (fill_buf, unlike read, does not stop there), and a
        // body that ends short of it fails, so the connection is closed.
        let mut left = len;
        loop {
            if left == Some(0) {
                break;
            }
            // The body's own writer, not the client: no stall of the client's.
            let data = guarded(timeout, evict, None, body.fill_buf()).await?;
            if data.is_empty() {
                if left.is_some() {
                    log::debug!("connection: a body ended before its content-length; closing");
                    return Err(WriteFailed);
                }
                break;
            }
            let n = data.len().min(FRAME).min(left.unwrap_or(usize::MAX));
            let data = &data[..n];
            // As if written 64 KiB at a time, each within the timeout.
            let allowed = timeout.saturating_mul(u32::try_from(n.div_ceil(WRITE_STEP)).unwrap_or(u32::MAX).max(1));
            if chunked {
                frame.clear();
                frame.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                frame.extend_from_slice(data);
                frame.extend_from_slice(b"\r\n");
                write_to(out, &frame, allowed, evict, place).await?;
            } else {
                write_to(out, data, allowed, evict, place).await?;
            }
            body.consume(n);
            left = left.map(|l| l - n);
        }
        if chunked {
            guarded(timeout, evict, place, out.write_all(b"0\r\n\r\n")).await?;
        }
    }
    guarded(timeout, evict, place, out.flush()).await?;
    Ok(close)
}

/// How much of a body must go within the write timeout: a write of more has as many times it.
const WRITE_STEP: usize = 64 * 1024;

/// Writes all of `data` within `allowed`, a write at a time, each [`guarded`]: a client
/// that takes some of it within [`STALLED`], however little, is reading, and its connection
/// stays answering (a frame of 512 KiB written whole would have taken a steady 480 KB/s
/// reader for a stalled one).
async fn write_to<W: AsyncWrite + Unpin>(
    out: &mut BufWriter<W>,
    data: &[u8],
    allowed: Duration,
    evict: Option<&Evictable>,
    place: Option<&Place>,
) -> Result<(), WriteFailed> {
    let deadline = std::time::Instant::now() + allowed;
    let mut written = 0;
    while written < data.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match guarded(left, evict, place, out.write(&data[written..])).await? {
            0 => return Err(WriteFailed),
            n => written += n,
        }
    }
    Ok(())
}

/// The most of a body written at once: more than a `/metrics` body's piece holds (see
/// `body.rs`), so each piece is one write and TCP sees large writes, but a body read from one
/// large buffer (an embedder's `String`) is not copied whole into a chunk.
const FRAME: usize = 2 * crate::body::PIECE;

/// After refusing a request whose bytes we did not all read, reads (and drops) what the
/// client still sends, for a moment: closing with unread input makes the kernel reset the
/// connection, which can destroy the answer before the client reads it.
pub(crate) async fn linger<R: AsyncRead + Unpin>(reader: &mut R, most: Duration) {
    let mut scratch = vec![0u8; 64 * 1024];
    let mut left: usize = 8 * 1024 * 1024;
    let until = std::time::Instant::now() + most;
    while left > 0 {
        let wait = until.saturating_duration_since(std::time::Instant::now());
        match async_std::future::timeout(wait, reader.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Answers with `res` and closes: the request cannot be served. While it lingers, the
/// connection may be closed for room, as a waiting one may.
async fn refuse<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    out: &mut BufWriter<W>,
    res: Response,
    version: Version,
    limits: &Limits,
    place: &Place,
) {
    if write_response(out, res, version, false, true, limits.write, place).await.is_ok() {
        place.wait();
        futures_lite::future::or(linger(reader, Duration::from_secs(2)), place.closed()).await;
    }
}

/// Counts a request as answered when dropped (also when the connection fails mid-way).
struct Done<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A short plain-text answer of ours (errors before the app is reached).
fn plain(status: StatusCode, body: &str) -> Response {
    let mut res = Response::new(status);
    res.insert_header("content-type", "text/plain; charset=utf-8");
    res.set_body(body.to_owned());
    res
}

/// What came next on a connection.
enum Next {
    /// A request, with its body.
    Request(Head, Vec<u8>),
    /// One that cannot be served: answered with this status and text (in this version),
    /// then the connection is closed, lingering for the bytes not read when `linger` (see
    /// [`refuse`]).
    Refuse(StatusCode, &'static str, Version, bool),
}

/// Whether `buffered` holds a whole request head (past any empty lines before it).
fn head_buffered(buffered: &[u8]) -> bool {
    let start = buffered.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(buffered.len());
    let rest = &buffered[start..];
    rest.windows(2).any(|w| w == b"\n\n") || rest.windows(3).any(|w| w == b"\n\r\n")
}

/// Reads the next request of a connection (within its time: [`Limits::idle`], or
/// [`Limits::head`] before the `first`), its body too; `None` ends the connection. It
/// writes only `100 Continue`, where asked: a refusal is an answer, written once the
/// connection is answering (so not closed for room under it). While a body still comes,
/// `place` waits.
async fn next_request<R, W>(
    reader: &mut BufReader<R>,
    writer: &mut BufWriter<W>,
    limits: &Limits,
    first: bool,
    place: &Place,
) -> Option<Next>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Wait for the next request (idle), then give its head a bound of its own.
    let idle = if first { limits.head } else { limits.idle };
    match async_std::future::timeout(idle, reader.fill_buf()).await {
        Ok(Ok([])) | Ok(Err(_)) | Err(_) => return None,
        Ok(Ok(_)) => {}
    }
    let head = match async_std::future::timeout(limits.head, read_head(reader, limits)).await {
        Err(_) => {
            return Some(Next::Refuse(StatusCode::RequestTimeout, "request head too slow\n", Version::Http1_1, false))
        }
        Ok(Ok(None)) | Ok(Err(HeadError::Gone)) => return None,
        Ok(Err(HeadError::Refuse(status, why))) => return Some(Next::Refuse(status, why, Version::Http1_1, true)),
        Ok(Ok(Some(head))) => head,
    };
    if head.header("Transfer-Encoding").is_some() {
        let why = "request bodies must have a Content-Length\n";
        return Some(Next::Refuse(StatusCode::NotImplemented, why, head.version, true));
    }
    let length = match content_length(&head) {
        Some(n) if n <= limits.body => n,
        Some(_) => {
            return Some(Next::Refuse(StatusCode::PayloadTooLarge, "request body too large\n", head.version, true));
        }
        None => {
            return Some(Next::Refuse(StatusCode::BadRequest, "malformed Content-Length\n", head.version, true));
        }
    };
    if head.header("Expect").is_some() {
        if !head.elements("Expect").all(|e| e.eq_ignore_ascii_case("100-continue")) {
            return Some(Next::Refuse(
                StatusCode::ExpectationFailed,
                "only 100-continue is expected\n",
                head.version,
                true,
            ));
        }
        if length > 0 && head.version == Version::Http1_1 {
            // Guarded as any write to the client: a stalled one waits.
            let sent = async {
                writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                writer.flush().await
            };
            guarded(limits.write, None, Some(place), sent).await.ok()?;
        }
    }
    // A body still to come is waited for as a request is: closable for room (see
    // `waiting.rs`), and a new answer once it has come.
    if reader.buffer().len() < length {
        place.wait();
    }
    // As the bytes come, not `length` of them at once: a client may promise more than it sends.
    let mut body = Vec::new();
    let mut limited = (&mut *reader).take(length as u64);
    match async_std::future::timeout(limits.head, limited.read_to_end(&mut body)).await {
        Ok(Ok(n)) if n == length => Some(Next::Request(head, body)),
        Ok(_) => None,
        Err(_) => Some(Next::Refuse(StatusCode::RequestTimeout, "request body too slow\n", head.version, false)),
    }
}

/// The request body's length: none without a `Content-Length`; every `Content-Length` (and
/// every value of a list in one) must be the same number, digits only (RFC 9112 6.3: two that
/// differ are a request that proxies may frame otherwise, as smuggling does).
fn content_length(head: &Head) -> Option<usize> {
    let mut length = None;
    for (_, value) in head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length")) {
        for value in value.split(',').map(|v| v.trim_matches([' ', '\t'])) {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n = value.parse::<usize>().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    Some(length.unwrap_or(0))
}

/// Serves the requests of one connection in order until it closes, fails, times out or is
/// closed for room (`place`: between requests it waits there, see [`crate::waiting`]).
/// `prepare` sees each request before the app does (the accept loop marks verified TLS
/// clients there); `scheme` is `http` or `https`; `busy` counts requests being answered.
pub async fn serve_connection<S, IO>(
    io: IO,
    app: tide::Server<S>,
    limits: Limits,
    scheme: &'static str,
    prepare: impl Fn(&mut Request),
    busy: &std::sync::atomic::AtomicUsize,
    place: &Place,
) where
    S: Clone + Send + Sync + 'static,
    IO: AsyncRead + AsyncWrite + Clone + Unpin,
{
    let mut reader = BufReader::with_capacity(16 * 1024, io.clone());
    let mut out = BufWriter::with_capacity(64 * 1024, io);
    let mut first = true;
    loop {
        // Waiting from when it was accepted for its first request (the accept loop's
        // order, not the order in which connections' tasks happen to run), and from each
        // answer's end after that; but a request whose whole head was sent behind the one
        // answered (pipelined) goes on with its answer (see `waiting.rs`). One partly sent
        // waits: it holds nothing it is owed.
        if !first && !head_buffered(reader.buffer()) {
            place.wait();
        }
        // A turn for the other tasks between answers: a client pipelining without pause never
        // leaves this loop waiting on its socket, and two of them held both of the
        // executor's threads, so no other connection was answered (a fourth trial).
        if !first {
            futures_lite::future::yield_now().await;
        }
        let next = next_request(&mut reader, &mut out, &limits, first, place);
        let next = futures_lite::future::or(next, async {
            place.closed().await;
            None
        });
        let Some(next) = next.await else { return };
        // Answering from here on, a refusal too.
        if !place.answer() {
            return;
        }
        let (head, body) = match next {
            Next::Request(head, body) => (head, body),
            Next::Refuse(status, why, version, true) => {
                return refuse(&mut reader, &mut out, plain(status, why), version, &limits, place).await
            }
            Next::Refuse(status, why, version, false) => {
                let _ = write_response(&mut out, plain(status, why), version, false, true, limits.write, place).await;
                return;
            }
        };
        first = false;
        let keep_alive = head.keep_alive();
        let head_only = head.method.eq_ignore_ascii_case("HEAD");
        busy.fetch_add(1, Ordering::SeqCst);
        let _done = Done(busy);
        let res = match request(&head, body, scheme) {
            // The server's own options (RFC 9110 9.3.7), answered as Go's servers do: 200,
            // and nothing else said.
            _ if head.method == "OPTIONS" && head.target == "*" && host(&head).is_ok() => Response::new(StatusCode::Ok),
            Ok(mut req) => {
                prepare(&mut req);
                // A connection closed for room (pipelining) lets go of its slot at once, not
                // once its answer is ready.
                let responded = futures_lite::future::or(async { Some(app.respond(req).await) }, async {
                    place.closed().await;
                    None
                });
                match responded.await {
                    Some(Ok(res)) => res,
                    Some(Err(e)) => plain(e.status(), "internal error\n"),
                    None => return,
                }
            }
            Err((status, why)) => {
                return refuse(&mut reader, &mut out, plain(status, why), head.version, &limits, place).await;
            }
        };
        match write_response(&mut out, res, head.version, head_only, !keep_alive, limits.write, place).await {
            Ok(false) => {}
            // Asked to close, or a body that the close ends (HTTP/1.0): a request after it
            // would be read as the body's end.
            Ok(true) | Err(WriteFailed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    fn app() -> tide::Server<()> {
        let mut app = tide::new();
        app.at("/healthz").get(|_| async { Ok("ok\n") });
        app.at("/echo").get(|req: tide::Request<()>| async move {
            Ok(req.header("X-Echo").map(|h| h.as_str().to_owned()).unwrap_or_default())
        });
        // A body written as it is sent: whole (its empty last piece), or cut short.
        let streamed = |pieces: &'static [&'static [u8]]| {
            move |_| async move {
                let (tx, rx) = crate::body::channel();
                for piece in pieces {
                    tx.send(piece.to_vec()).await.expect("room");
                }
                let mut res = tide::Response::new(StatusCode::Ok);
                res.set_body(tide::Body::from_reader(crate::Exposition::streamed(rx, Default::default()), None));
                Ok(res)
            }
        };
        app.at("/streamed").get(streamed(&[b"ab", b"cd", b""]));
        // Past the connection's 64 KiB buffer, so that what was read goes out at once.
        let half: &'static [u8] = Box::leak(vec![b'x'; 100_000].into_boxed_slice());
        app.at("/cut").get(streamed(Box::leak(Box::new([half]))));
        // Bodies whose reader has more, or less, than their length says.
        let sized = |data: &'static [u8], len: usize| {
            move |_| async move {
                let mut res = tide::Response::new(StatusCode::Ok);
                res.set_body(tide::Body::from_reader(futures_lite::io::Cursor::new(data), Some(len)));
                Ok(res)
            }
        };
        app.at("/longer").get(sized(b"abcdefgh", 4));
        // More than the kernel's buffers hold, for a client that does not read.
        let big: &'static [u8] = Box::leak(vec![b'y'; 32 << 20].into_boxed_slice());
        app.at("/big").get(sized(big, big.len()));
        app.at("/shorter").get(sized(b"abcd", 8));
        app
    }

    /// One connection, served with its place in `waiting`: its client, and the server's task.
    async fn served(
        waiting: &Arc<crate::waiting::Waiting>,
    ) -> (async_std::net::TcpStream, async_std::task::JoinHandle<()>) {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let w = waiting.clone();
        let server = async_std::task::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let place = w.join();
            serve_connection(stream, app(), Limits::default(), "http", |_| {}, &Default::default(), &place).await;
        });
        let client = async_std::net::TcpStream::connect(addr).await.expect("connect");
        (client, server)
    }

    /// Asks `waiting` for room until it closes a connection, for 10 s at most (else fails
    /// saying `never`); which kind it closed.
    async fn closed_for_room(waiting: &crate::waiting::Waiting, never: &str) -> crate::waiting::Closed {
        let started = Instant::now();
        loop {
            if let Some(closed) = waiting.close_longest() {
                return closed;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{never}");
            async_std::task::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Serves `input` as one connection's bytes and returns everything written back.
    fn exchange(input: &[u8]) -> String {
        async_std::task::block_on(async {
            let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = async_std::task::spawn(async move {
                let (stream, _) = listener.accept().await.expect("accept");
                let place = Arc::new(crate::waiting::Waiting::default()).join();
                serve_connection(stream, app(), Limits::default(), "http", |_| {}, &Default::default(), &place).await;
            });
            let mut client = async_std::net::TcpStream::connect(addr).await.expect("connect");
            client.write_all(input).await.expect("write");
            client.shutdown(std::net::Shutdown::Write).expect("half-close");
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.expect("read");
            server.await;
            answer
        })
    }

    #[test]
    fn http_1_0_is_answered_and_closed() {
        let answer = exchange(b"GET /healthz HTTP/1.0\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(answer.contains("connection: close\r\n") && answer.ends_with("ok\n"), "{answer}");
    }

    #[test]
    fn a_streamed_body_is_chunked_and_one_cut_short_never_ends() {
        let whole = exchange(b"GET /streamed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert!(whole.contains("transfer-encoding: chunked\r\n"), "{whole}");
        assert!(whole.ends_with("\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"), "{whole:?}");
        let cut = exchange(b"GET /cut HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(cut.starts_with("HTTP/1.1 200 OK\r\n"), "{}", &cut[..cut.len().min(300)]);
        // The piece of 100,000 bytes is one chunk (one write, not 64 KiB and the rest).
        let x = "x".repeat(100_000);
        assert!(cut.contains(&format!("\r\n\r\n186a0\r\n{x}\r\n")), "{}", &cut[..cut.len().min(300)]);
        // Closed without the last chunk, which a client reads as an error.
        assert!(!cut.contains("\r\n0\r\n\r\n"), "no last chunk: {:?}", &cut[cut.len().saturating_sub(40)..]);
        assert!(cut.ends_with(&format!("{x}\r\n")), "nothing after: {:?}", &cut[cut.len().saturating_sub(40)..]);
    }

    #[test]
    fn a_body_goes_no_further_than_its_length_and_one_short_of_it_closes_the_connection() {
        let answer = exchange(b"GET /longer HTTP/1.1\r\nHost: a\r\n\r\nGET /echo HTTP/1.1\r\nHost: a\r\nX-Echo: next\r\nConnection: close\r\n\r\n");
        assert!(answer.contains("content-length: 4\r\n\r\nabcdHTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("next"), "{answer}");
        let answer =
            exchange(b"GET /shorter HTTP/1.1\r\nHost: a\r\n\r\nGET /echo HTTP/1.1\r\nHost: a\r\nX-Echo: next\r\n\r\n");
        // Closed with the short body unsent (it waited in the connection's buffer), or cut.
        assert!(!answer.contains("abcd\r\n") && !answer.contains("next"), "closed: {answer:?}");
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let answer = exchange(
            b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Echo: one\r\n\r\nGET /echo HTTP/1.1\r\nHost: a\r\nX-Echo: two\r\n\r\nGET /echo HTTP/1.1\r\nHost: a\r\nX-Echo: three\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3, "{answer}");
        let (one, two, three) =
            (answer.find("one").expect("1"), answer.find("two").expect("2"), answer.find("three").expect("3"));
        assert!(one < two && two < three, "{answer}");
    }

    #[test]
    fn oversized_or_garbage_heads_get_a_status() {
        let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100 * 1024));
        assert!(exchange(long_target.as_bytes()).starts_with("HTTP/1.1 414 "));
        let big_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(1024 * 1024));
        assert!(exchange(big_header.as_bytes()).starts_with("HTTP/1.1 431 "));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(200));
        assert!(exchange(many.as_bytes()).starts_with("HTTP/1.1 431 "));
        assert!(exchange(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
        assert!(exchange(b"GET / HTTP/2.0\r\n\r\n").starts_with("HTTP/1.1 505 "));
        assert!(exchange(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n").starts_with("HTTP/1.1 400 "));
        assert!(exchange(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n").starts_with("HTTP/1.1 400 "), "a bare CR");
        assert!(exchange(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .starts_with("HTTP/1.1 501 "));
    }

    #[test]
    fn a_header_past_ascii_is_refused_unless_nothing_here_reads_it() {
        // Latin-1 (obs-text) and UTF-8 alike.
        for value in [&b"caf\xe9"[..], "café".as_bytes()] {
            let sent = |name: &str, echo: &str| {
                let mut ask =
                    format!("GET /echo HTTP/1.1\r\nHost: a\r\n{echo}Connection: close\r\n{name}: ").into_bytes();
                ask.extend_from_slice(value);
                ask.extend_from_slice(b"\r\n\r\n");
                exchange(&ask)
            };
            for name in ["User-Agent", "referer", "From", "Cookie"] {
                let answer = sent(name, "X-Echo: served\r\n");
                assert!(answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("served"), "{name}: {answer}");
            }
            // Its absence could mean more than its presence: a second `Authorization`
            // would count in its place.
            for name in ["X-Echo", "Authorization", "X-Forwarded-For", "Host", "Content-Length", "Connection"] {
                assert!(sent(name, "").starts_with("HTTP/1.1 400 "), "{name}");
            }
        }
        // Left out, still counted.
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "User-Agent: \u{e9}\r\n".repeat(200));
        assert!(exchange(many.as_bytes()).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn control_bytes_in_the_target_or_a_value_and_a_fragment_are_refused() {
        for target in ["/healthz\0", "/healthz\x1f", "/heal\tthz", "/healthz#x", "/echo#/../healthz", "/\x7f"] {
            let answer = exchange(format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
            assert!(answer.starts_with("HTTP/1.1 400 "), "{target:?}: {answer}");
        }
        for value in ["a\x01b", "a\x7fb", "close\x0b"] {
            let answer = exchange(format!("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Echo: {value}\r\n\r\n").as_bytes());
            assert!(answer.starts_with("HTTP/1.1 400 "), "{value:?}: {answer}");
        }
        let tab = exchange(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Echo: a\tb\r\n\r\n");
        assert!(tab.starts_with("HTTP/1.1 200 ") && tab.ends_with("a\tb"), "a tab is allowed: {tab}");
    }

    #[test]
    fn every_answer_carries_its_date_refusals_too() {
        for ask in [&b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..], b"GET / HTTP/2.0\r\n\r\n"] {
            let answer = exchange(ask);
            let date = answer.lines().find_map(|l| l.strip_prefix("date: ")).unwrap_or_else(|| panic!("{answer}"));
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
            // This second, or one of the ten before (a busy machine).
            let near: Vec<String> =
                (0..=10).map(|s| msp_core::format_http_date(now.saturating_sub(Duration::from_secs(s)))).collect();
            assert!(near.iter().any(|d| d == date), "{date} against {near:?}");
        }
    }

    #[test]
    fn options_asterisk_is_answered_by_the_server() {
        let answer = exchange(b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("\r\ncontent-length: 0\r\n") && lower.ends_with("\r\n\r\n"), "{answer}");
        assert!(!lower.contains("allow:") && !lower.contains("content-type:"), "nothing else said: {answer}");
        assert!(exchange(b"OPTIONS * HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "), "no Host");
        assert!(exchange(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n").starts_with("HTTP/1.1 400 "), "GET *");
    }

    #[test]
    fn a_host_header_that_is_not_a_host_is_refused() {
        for host in ["x/echo#", "x/echo?", "x#", "user@x", "x\\echo", "a b"] {
            let answer =
                exchange(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Echo: routed\r\n\r\n").as_bytes());
            assert!(answer.starts_with("HTTP/1.1 400 ") && !answer.contains("routed"), "{host}: {answer}");
        }
        let two = exchange(b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        assert!(two.starts_with("HTTP/1.1 400 "), "{two}");
        for host in
            ["localhost", "localhost:9100", "10.0.0.1:9100", "[fd00::1]:9100", "metrics-server-prom.monitoring.svc"]
        {
            let answer =
                exchange(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
            assert!(answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("ok\n"), "{host}: {answer}");
        }
    }

    #[test]
    fn http_1_0_without_a_length_closes_after_the_body_even_when_kept_alive() {
        // The body ends with the connection: a request after it must not be answered into it.
        let answer = exchange(b"GET /streamed HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n");
        assert!(answer.contains("connection: close\r\n") && answer.ends_with("\r\n\r\nabcd"), "{answer:?}");
        assert_eq!(answer.matches("HTTP/1.0 200").count(), 1, "{answer:?}");
        // With a length, keep-alive holds.
        let answer = exchange(
            b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo HTTP/1.0\r\nX-Echo: two\r\n\r\n",
        );
        assert!(answer.contains("connection: keep-alive\r\n") && answer.ends_with("two"), "{answer:?}");
    }

    #[test]
    fn content_lengths_that_disagree_or_are_not_digits_are_refused() {
        let get = |lengths: &str| {
            let headers: String = lengths.split('|').map(|l| format!("Content-Length: {l}\r\n")).collect();
            exchange(
                format!("GET /echo HTTP/1.1\r\nHost: a\r\nX-Echo: served\r\n{headers}Connection: close\r\n\r\n")
                    .as_bytes(),
            )
        };
        for refused in ["0|5", "5|0", "+0", "-1", "0x1", "", "1 2", "5, 6"] {
            let answer = get(refused);
            assert!(answer.starts_with("HTTP/1.1 400 ") && !answer.contains("served"), "{refused:?}: {answer}");
        }
        for taken in ["0", "0|0", "0, 0", " 0 "] {
            let answer = get(taken);
            assert!(answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("served"), "{taken:?}: {answer}");
        }
        // A body is taken up to 64 KiB, as it arrives.
        let answer = exchange(
            b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Echo: served\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody",
        );
        assert!(answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("served"), "{answer}");
        let over = format!("GET /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", 64 * 1024 + 1);
        assert!(exchange(over.as_bytes()).starts_with("HTTP/1.1 413 "));
    }

    #[test]
    fn expect_100_continue_is_answered_and_other_expectations_refused() {
        let answer = exchange(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Echo: served\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody");
        assert!(
            answer.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ") && answer.ends_with("served"),
            "{answer}"
        );
        let answer = exchange(b"GET /echo HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 4\r\n\r\nbody");
        assert!(answer.starts_with("HTTP/1.1 417 "), "{answer}");
    }

    /// A connection whose client pipelines without pause: requests always there to read (4 MiB
    /// of them), room always there to write.
    #[derive(Clone)]
    struct Endless(Arc<std::sync::atomic::AtomicUsize>);

    impl AsyncRead for Endless {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
            let at = self.0.fetch_add(buf.len(), Ordering::Relaxed);
            // Not for ever: a connection that never yields fails the test rather than hang it.
            if at > 4 << 20 {
                return std::task::Poll::Ready(Ok(0));
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = REQUEST[(at + i) % REQUEST.len()];
            }
            std::task::Poll::Ready(Ok(buf.len()))
        }
    }

    impl AsyncWrite for Endless {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Such a connection gives the other tasks a turn between answers: polled in one task
    /// beside another future, which is polled only when it is pending, it lets that one
    /// finish (two such clients held both of the executor's threads, and nothing else was
    /// answered).
    #[test]
    fn a_client_pipelining_without_pause_leaves_the_others_a_turn() {
        async_std::task::block_on(async {
            let waiting = Arc::new(crate::waiting::Waiting::default());
            let place = waiting.join();
            let busy = std::sync::atomic::AtomicUsize::new(0);
            let io = Endless(Arc::default());
            let served = io.0.clone();
            let serving = async {
                serve_connection(io, app(), Limits::default(), "http", |_| {}, &busy, &place).await;
                false
            };
            let other = async { true };
            assert!(futures_lite::future::or(serving, other).await, "the other future never ran");
            assert!(served.load(Ordering::Relaxed) > 0);
        })
    }

    #[test]
    fn a_head_is_buffered_once_its_blank_line_is() {
        assert!(head_buffered(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(head_buffered(b"\r\nGET / HTTP/1.0\n\n"));
        for partial in [&b""[..], b"G", b"GET / HTTP/1.1\r\nHost: a\r\n", b"\r\n\r\n", b"\n\n\nGET /"] {
            assert!(!head_buffered(partial), "{:?}", String::from_utf8_lossy(partial));
        }
    }

    /// A request partly sent behind the one answered is waited for as a new one is: it holds
    /// nothing it is owed (a third trial held every connection answering with one byte of a
    /// second request each).
    #[test]
    fn a_partly_sent_pipelined_request_is_waited_for() {
        async_std::task::block_on(async {
            let waiting = Arc::new(crate::waiting::Waiting::default());
            let (mut client, server) = served(&waiting).await;
            client.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nG").await.expect("write");
            let mut answer = [0u8; 12];
            client.read_exact(&mut answer).await.expect("read");
            assert_eq!(&answer, b"HTTP/1.1 200");
            assert_eq!(closed_for_room(&waiting, "never waiting").await, crate::waiting::Closed::Waiting);
            async_std::future::timeout(Duration::from_secs(5), server).await.expect("closed for room");
        })
    }

    #[test]
    fn list_headers_are_read_over_all_their_lines() {
        // `close` on a second Connection line closes, as in one list.
        let answer = exchange(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\nGET /echo HTTP/1.1\r\nHost: a\r\nX-Echo: two\r\n\r\n");
        assert!(answer.contains("connection: close\r\n") && !answer.contains("two"), "{answer}");
        let answer =
            exchange(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n");
        assert_eq!(answer.matches("HTTP/1.0 200").count(), 1, "{answer}");
        let answer = exchange(b"GET /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: teapot\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 417 "), "{answer}");
    }

    #[test]
    fn http_1_1_needs_a_host_and_methods_are_case_sensitive() {
        assert!(exchange(b"GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
        // In absolute form too, and the Host checked as in origin form.
        assert!(exchange(b"GET http://a/healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
        assert!(exchange(b"GET http://a/healthz HTTP/1.1\r\nHost: x/metrics#\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let answer = exchange(b"GET http://a/healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(exchange(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n").starts_with("HTTP/1.1 400 "), "NUL");
        let answer = exchange(b"GET /healthz HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 "), "an empty Host is one: {answer}");
        assert!(exchange(b"GET /healthz HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200 "), "1.0 needs none");
        assert!(exchange(b"get /healthz HTTP/1.1\r\nHost: a\r\n\r\n").starts_with("HTTP/1.1 501 "));
    }

    /// A client that reads steadily, if more slowly than a frame a second, is reading: its
    /// connection is never closable for room while a write waits on it.
    #[test]
    fn a_client_reading_steadily_is_never_taken_for_a_stalled_one() {
        async_std::task::block_on(async {
            let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let mut client = async_std::net::TcpStream::connect(addr).await.expect("connect");
            let (stream, _) = listener.accept().await.expect("accept");
            // Small kernel buffers, so that a frame waits on the reader rather than on them.
            rustix::net::sockopt::set_socket_send_buffer_size(&stream, 16 * 1024).expect("SO_SNDBUF");
            rustix::net::sockopt::set_socket_recv_buffer_size(&client, 16 * 1024).expect("SO_RCVBUF");
            // 32 KiB every 100 ms, about 320 KB/s: a 512 KiB frame takes more than a second,
            // but some of it goes every 100 ms.
            let reader = async_std::task::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                let mut total = 0;
                loop {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return total,
                        Ok(n) => total += n,
                    }
                    async_std::task::sleep(Duration::from_millis(100)).await;
                }
            });
            let waiting = Arc::new(crate::waiting::Waiting::default());
            let place = waiting.join();
            assert!(place.answer());
            // Room is asked for all along, with a connection that has just begun to wait:
            // only a stalled write, waiting since it began, would be closed before it.
            let asking = {
                let waiting = waiting.clone();
                async_std::task::spawn(async move {
                    let mut given = 0;
                    for _ in 0..300 {
                        let decoy = waiting.join();
                        assert!(waiting.close_longest().is_some());
                        given += usize::from(decoy.answer());
                        async_std::task::sleep(Duration::from_millis(20)).await;
                    }
                    given
                })
            };
            let mut out = BufWriter::with_capacity(64 * 1024, stream);
            let data = vec![b'z'; 1 << 20];
            for frame in data.chunks(FRAME) {
                let written = write_to(&mut out, frame, Duration::from_secs(60), None, Some(&place)).await;
                assert!(written.is_ok(), "a steady reader's connection was closed for room");
            }
            assert!(guarded(Duration::from_secs(60), None, Some(&place), out.flush()).await.is_ok());
            drop(out);
            assert_eq!(reader.await, 1 << 20);
            assert_eq!(asking.await, 0, "closable while its client read");
        })
    }

    /// A client that stops reading its answer leaves the connection closable for room, as an
    /// idle one is: answers it never reads cannot hold every connection.
    #[test]
    fn a_connection_whose_client_stops_reading_can_be_closed_for_room() {
        async_std::task::block_on(async {
            let waiting = Arc::new(crate::waiting::Waiting::default());
            let (mut client, server) = served(&waiting).await;
            client.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n").await.expect("write");
            // Answering: the answer has begun, then the client reads no more.
            let mut status = [0u8; 12];
            client.read_exact(&mut status).await.expect("read");
            assert_eq!(&status, b"HTTP/1.1 200");
            closed_for_room(&waiting, "a stalled answer is never closed for room").await;
            async_std::future::timeout(Duration::from_secs(2), server).await.expect("closed for room, at once");
            drop(client);
        })
    }

    #[test]
    fn head_requests_get_headers_only() {
        let answer = exchange(b"HEAD /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.contains("content-length: 3\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");
    }

    /// Once a refusal is written, it lingers for what the client still sends as a waiting
    /// connection does, closable for room (lingering refusals held as answers were a way to
    /// keep Prometheus out).
    #[test]
    fn a_written_refusal_lingers_closable_for_room() {
        async_std::task::block_on(async {
            let waiting = Arc::new(crate::waiting::Waiting::default());
            let (mut client, server) = served(&waiting).await;
            client
                .write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\nbody")
                .await
                .expect("write");
            let mut status = [0u8; 12];
            client.read_exact(&mut status).await.expect("read");
            assert_eq!(&status, b"HTTP/1.1 413");
            // The 413 is out and the server lingers for the body still coming, so that
            // closing does not reset the connection under the answer, unless room is needed.
            closed_for_room(&waiting, "a lingering refusal is never closed for room").await;
            async_std::future::timeout(Duration::from_secs(5), server).await.expect("closed for room, at once");
        })
    }

    #[test]
    fn a_connection_waits_from_when_it_was_accepted_not_from_when_its_task_began() {
        async_std::task::block_on(async {
            let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let waiting = Arc::new(crate::waiting::Waiting::default());
            let mut older_client = async_std::net::TcpStream::connect(addr).await.expect("connect");
            let (older, _) = listener.accept().await.expect("accept");
            let older_place = waiting.join();
            async_std::task::sleep(Duration::from_millis(5)).await;
            let mut newer_client = async_std::net::TcpStream::connect(addr).await.expect("connect");
            let (newer, _) = listener.accept().await.expect("accept");
            let newer_place = waiting.join();
            // The newer connection's task begins first, as it may on another thread.
            let serve = |stream, place: Place| async move {
                serve_connection(stream, app(), Limits::default(), "http", |_| {}, &Default::default(), &place).await
            };
            let newer = async_std::task::spawn(serve(newer, newer_place));
            async_std::task::sleep(Duration::from_millis(20)).await;
            let older = async_std::task::spawn(serve(older, older_place));
            async_std::task::sleep(Duration::from_millis(50)).await;
            assert!(waiting.close_longest().is_some());
            let mut byte = [0u8; 1];
            let read = async_std::future::timeout(Duration::from_secs(5), older_client.read(&mut byte)).await;
            assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the one accepted first is closed: {read:?}");
            older.await;
            let read = async_std::future::timeout(Duration::from_millis(100), newer_client.read(&mut byte)).await;
            assert!(read.is_err(), "the newer one is still open: {read:?}");
            drop(newer_client);
            newer.await;
        })
    }
}
