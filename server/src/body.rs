//! A `/metrics` response body, read as it is written: its writer's end ([`BodyWriter`])
//! takes text, gzips it when asked, and sends it in pieces of about [`PIECE`] bytes over a
//! bounded channel; its reader's end ([`Exposition`]) hands each on as the client takes it.
//! The writer waits while the channel is full, so nothing holds the whole body.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_std::channel::{Receiver, Sender};
use futures_lite::io::{AsyncBufRead, AsyncRead};
use futures_lite::Stream;

use crate::flight::Evicted;

/// A piece of a response body. The first and the last of every body are empty: they say
/// that writing has begun (see `flight.rs`), and that the body is whole.
pub(crate) type Piece = Vec<u8>;

/// How many pieces a body's channel holds before its writer waits for the reader.
const PIECES: usize = 4;

/// A channel for one body's pieces.
pub(crate) fn channel() -> (Sender<Piece>, Receiver<Piece>) {
    async_std::channel::bounded(PIECES)
}

/// About how many bytes a piece holds: large enough that TCP sees large writes, and that
/// handing a piece from the writer's thread to the connection's is rare.
pub const PIECE: usize = 256 * 1024;

/// The writer's end of a body, on a thread that may wait for the reader.
pub(crate) struct BodyWriter<'w> {
    tx: Sender<Piece>,
    gzip: Option<msp_core::Gzip>,
    piece: Piece,
    /// Whether the reader has gone: the rest is not sent, nor compressed.
    gone: bool,
    /// How long sending has waited for the reader, so far.
    waited: &'w Cell<Duration>,
}

impl<'w> BodyWriter<'w> {
    /// Begins a body, gzipped when `gzip`, with the empty piece that says writing has begun;
    /// `None` if its reader has gone already. Time spent waiting for the reader is added to
    /// `waited`.
    pub(crate) fn begin(tx: Sender<Piece>, gzip: bool, waited: &'w Cell<Duration>) -> Option<Self> {
        tx.send_blocking(Piece::new()).ok()?;
        let gzip = gzip.then(|| msp_core::Gzip::new(Vec::new()));
        Some(BodyWriter { tx, gzip, piece: Vec::with_capacity(PIECE + PIECE / 2), gone: false, waited })
    }

    /// Adds `text` to the body; sends a piece once one is due. [`ControlFlow::Break`] once
    /// the reader has gone: the rest need not be written.
    pub(crate) fn write(&mut self, text: &[u8]) -> ControlFlow<()> {
        if self.gone {
            return ControlFlow::Break(());
        }
        match &mut self.gzip {
            Some(gz) => {
                gz.write(text);
                gz.drain(&mut self.piece);
            }
            None => self.piece.extend_from_slice(text),
        }
        if self.piece.len() >= PIECE {
            self.send();
        }
        if self.gone {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn send(&mut self) {
        // Room for a piece and the write that passes it, so that it is not copied as it grows.
        let next = Vec::with_capacity(PIECE + PIECE / 2);
        let piece = std::mem::replace(&mut self.piece, next);
        self.hand(piece);
    }

    /// Sends `piece` once the reader has room for it.
    fn hand(&mut self, piece: Piece) {
        let waiting = Instant::now();
        self.gone = self.tx.send_blocking(piece).is_err();
        self.waited.set(self.waited.get() + waiting.elapsed());
    }

    /// Ends the writing: what is left to send, and the end, to be sent once the scrape has
    /// let go of what it read (see [`Ending`]); `None` if the reader has gone.
    pub(crate) fn finish(mut self) -> Option<Ending> {
        if self.gone {
            return None;
        }
        if let Some(gz) = self.gzip.take() {
            self.piece.extend_from_slice(&gz.finish());
        }
        Some(Ending { tx: self.tx, last: self.piece })
    }
}

/// A body's last piece and its end, written but not yet sent: the last body of a scrape to
/// be written sends them after the scrape has handed back the lists it read, so that a
/// client which asks again as soon as it has the end finds the lists' memory free for the
/// next read (the others send theirs at once: the lists stay for the last anyway).
pub(crate) struct Ending {
    tx: Sender<Piece>,
    last: Piece,
}

impl Ending {
    /// Sends the last piece, then the empty piece that says this is the end, as the reader
    /// has room; whether it took them.
    pub(crate) async fn send(self) -> bool {
        (self.last.is_empty() || self.tx.send(self.last).await.is_ok()) && self.tx.send(Piece::new()).await.is_ok()
    }
}

/// A response body: one scrape's exposition, in the format and encoding asked for, read
/// as it is written. It ends at the writer's empty last piece; a writer that stops before
/// it makes reading fail, so that the connection is closed rather than a body cut short
/// sent as a whole one. A scrape [evicted](Exposition::evicted) is abandoned by the
/// server's writer, through the flag.
#[derive(Debug)]
pub struct Exposition {
    /// What is still to come; `None` for a body written whole, or read to its end.
    pieces: Option<Receiver<Piece>>,
    /// Whether its writer stopped before the end: every read fails from then on.
    cut: bool,
    piece: Piece,
    /// How much of `piece` has been read.
    at: usize,
    evicted: Evicted,
}

impl Exposition {
    /// A body whose pieces come from `pieces`; `evicted` are its flags, held while the body
    /// lives.
    pub(crate) fn streamed(pieces: Receiver<Piece>, evicted: Evicted) -> Self {
        Exposition { pieces: Some(pieces), cut: false, piece: Vec::new(), at: 0, evicted }
    }

    /// A body written whole.
    pub(crate) fn whole(bytes: Vec<u8>) -> Self {
        Exposition { pieces: None, cut: false, piece: bytes, at: 0, evicted: Evicted::default() }
    }

    /// Set once this body, or its scrape, is evicted: whoever is still sending it should stop.
    pub fn evicted(&self) -> Evicted {
        self.evicted.clone()
    }

    /// The whole body, read to its end; fails if its writer stopped before it.
    pub async fn read_all(self) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        futures_lite::io::AsyncReadExt::read_to_end(&mut { self }, &mut all).await?;
        Ok(all)
    }
}

impl AsyncBufRead for Exposition {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        let cut = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the scrape stopped writing");
        if this.cut {
            return Poll::Ready(Err(cut()));
        }
        while this.at == this.piece.len() {
            let Some(pieces) = this.pieces.as_mut() else { break };
            match Pin::new(pieces).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                // The end.
                Poll::Ready(Some(piece)) if piece.is_empty() => this.pieces = None,
                Poll::Ready(Some(piece)) => {
                    this.evicted.progressed();
                    (this.piece, this.at) = (piece, 0);
                }
                Poll::Ready(None) => {
                    // Not an end: a body cut short must not read as a whole one, however
                    // often it is read again.
                    (this.pieces, this.cut) = (None, true);
                    return Poll::Ready(Err(cut()));
                }
            }
        }
        Poll::Ready(Ok(&this.piece[this.at..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.at = (this.at + amt).min(this.piece.len());
    }
}

impl AsyncRead for Exposition {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(available)) => available,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_read_in_order_to_the_empty_one_that_ends_them() {
        async_std::task::block_on(async {
            // Begun (taken by the exporter before the body is made), then pieces, then the end.
            let (tx, rx) = channel();
            let writer = async_std::task::spawn(async move {
                for piece in [&b"ab"[..], b"cde", b"f", b"", b"after the end"] {
                    drop(tx.send(piece.to_vec()).await);
                }
            });
            let body = Exposition::streamed(rx, Evicted::default());
            assert_eq!(body.read_all().await.expect("whole"), b"abcdef");
            writer.await;
            assert_eq!(Exposition::whole(b"all".to_vec()).read_all().await.expect("whole"), b"all");
            // A writer that stops before its end fails the read.
            let (tx, rx) = channel();
            tx.send(b"half".to_vec()).await.expect("room");
            drop(tx);
            let mut all = Vec::new();
            let mut cut = Exposition::streamed(rx, Evicted::default());
            let read = futures_lite::io::AsyncReadExt::read_to_end(&mut cut, &mut all).await;
            assert!(read.is_err_and(|e| e.kind() == std::io::ErrorKind::UnexpectedEof), "{all:?}");
            let again = futures_lite::io::AsyncReadExt::read(&mut cut, &mut [0; 8]).await;
            assert!(again.is_err(), "and on every read after: {again:?}");
        });
    }

    /// `text` written in writes of `write` bytes, and read back whole.
    fn through(text: &[u8], write: usize, gzip: bool) -> (Vec<u8>, usize) {
        let (tx, rx) = channel();
        let text = text.to_vec();
        let writer = std::thread::spawn(move || {
            let waited = Cell::default();
            let mut body = BodyWriter::begin(tx, gzip, &waited).expect("a reader");
            for part in text.chunks(write) {
                assert!(body.write(part).is_continue());
            }
            let ending = body.finish().expect("a reader");
            assert!(async_std::task::block_on(ending.send()), "read whole");
        });
        let mut pieces = 0;
        let mut all = Vec::new();
        while let Ok(piece) = rx.recv_blocking() {
            assert!(piece.len() < PIECE + write.max(PIECE), "a piece of {}", piece.len());
            pieces += 1;
            all.extend(piece);
        }
        writer.join().expect("writer");
        (all, pieces)
    }

    #[test]
    fn a_body_written_in_pieces_reads_back_as_written() {
        // Labels that differ at random, so that even gzipped it takes several pieces.
        let mut x = 1u64;
        let text: Vec<u8> = (0..60_000)
            .flat_map(|i| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                format!("m{{pod=\"p-{x:016x}\"}} {i}\n").into_bytes()
            })
            .collect();
        let (plain, pieces) = through(&text, 256 * 1024, false);
        assert!(plain == text);
        assert!(pieces > 3, "{pieces} pieces");
        let (packed, pieces) = through(&text, 256 * 1024, true);
        assert!(packed == msp_core::compress(&text), "the same gzip stream as written whole");
        assert!(pieces > 4, "{pieces} pieces");
        let (empty, pieces) = through(b"", 1, true);
        assert!(empty == msp_core::compress(b""));
        assert_eq!(pieces, 3, "the begun piece, the stream, the end");
    }

    #[test]
    fn a_body_dropped_unread_stops_its_writer() {
        let (tx, rx) = channel();
        let reader = Exposition::streamed(rx, Evicted::default());
        let waited = Cell::default();
        let mut body = BodyWriter::begin(tx.clone(), false, &waited).expect("a reader");
        drop(reader);
        assert!(body.write(&vec![b'x'; 4 * PIECE]).is_break(), "sending failed, and says stop");
        assert!(body.write(b"more").is_break());
        assert!(body.finish().is_none(), "not read whole");
        assert!(BodyWriter::begin(tx, true, &waited).is_none());
    }
}
