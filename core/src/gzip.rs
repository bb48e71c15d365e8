//! gzip (RFC 1952) around our [deflate](crate::deflate) encoder: what `/metrics` sends when
//! `Accept-Encoding` allows it, compressed as the exposition is written.

use crate::deflate::Deflate;

/// ID1 ID2, CM = deflate, no flags, no modification time, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// A gzip stream fed piece by piece (the exposition as it is written).
pub struct Gzip {
    deflate: Deflate,
    crc: crc32fast::Hasher,
    /// The input's length modulo 2^32, as the trailer says it.
    len: u32,
}

impl std::fmt::Debug for Gzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gzip").field("len", &self.len).finish_non_exhaustive()
    }
}

impl Gzip {
    /// Compresses into `buf` (emptied; its capacity is reused).
    pub fn new(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&HEADER);
        Gzip { deflate: Deflate::new(buf), crc: crc32fast::Hasher::new(), len: 0 }
    }

    /// Adds `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        self.len = self.len.wrapping_add(bytes.len() as u32);
        self.deflate.write(bytes);
    }

    /// Moves the stream written so far into `into`, to be sent before the rest: what
    /// [`Gzip::finish`] then returns is only what follows.
    pub fn drain(&mut self, into: &mut Vec<u8>) {
        self.deflate.drain(into);
    }

    /// The whole stream, or what follows what was drained.
    pub fn finish(self) -> Vec<u8> {
        let mut out = self.deflate.finish();
        out.extend_from_slice(&self.crc.finalize().to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out
    }
}

/// `body`, gzipped.
pub fn compress(body: &[u8]) -> Vec<u8> {
    let mut gz = Gzip::new(Vec::with_capacity(body.len() / 8));
    gz.write(body);
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_and_gunzip_agree() {
        let text = "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 2\n".repeat(500);
        for body in [&b""[..], text.as_bytes()] {
            let packed = compress(body);
            assert_eq!(&packed[..3], &[0x1f, 0x8b, 8]);
            // An independent decoder (flate2's, on miniz_oxide), which checks CRC and length.
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut out).expect("gunzip");
            assert_eq!(out, body);
        }
    }

    #[test]
    fn a_stream_drained_as_it_is_written_is_the_stream_written_whole() {
        // Long enough for several blocks, with a line longer than a write.
        let long = format!("long{{x=\"{}\"}} 1\n", "y".repeat(3000));
        let text = (0..30_000)
            .map(|i| format!("m{{pod=\"p-{i}\",ns=\"n-{}\"}} {i}\n{}", i % 7, if i % 5000 == 0 { &long } else { "" }))
            .collect::<String>();
        for piece in [1000, 4096, 256 * 1024] {
            let mut gz = Gzip::new(Vec::new());
            let mut sent = Vec::new();
            let mut drains = 0;
            for part in text.as_bytes().chunks(piece) {
                gz.write(part);
                let before = sent.len();
                gz.drain(&mut sent);
                drains += usize::from(sent.len() > before);
            }
            sent.extend(gz.finish());
            assert!(sent == compress(text.as_bytes()), "writes of {piece}: the same bytes");
            assert!(drains > 1, "writes of {piece}: the stream came out in pieces");
        }
    }

    #[test]
    fn gnu_gzip_reads_it() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let text = (0..20_000).map(|i| format!("m{{pod=\"p-{i}\",ns=\"n-{}\"}} {i}\n", i % 7)).collect::<String>();
        let Ok(mut gunzip) = Command::new("gzip").args(["-dc"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()
        else {
            panic!("gzip(1) is needed for this test (Debian: gzip)");
        };
        let packed = compress(text.as_bytes());
        let mut stdin = gunzip.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(&packed));
        let out = gunzip.wait_with_output().expect("gzip -dc");
        writer.join().expect("writer").expect("write");
        assert!(out.status.success(), "gzip -dc: {:?}", out.status);
        assert!(out.stdout == text.as_bytes());
    }
}
