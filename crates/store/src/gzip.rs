//! A gzip writer that does not spend time on data that will not compress.
//!
//! Deflate's match search costs the same whether or not it finds anything: on random or
//! already-compressed bytes (model weights, `.npz`, images, wheels) zlib runs at about
//! 20 MB/s per core and saves nothing. This writer looks at each 256 KiB block's byte
//! entropy first, and stores blocks above [`STORED_ENTROPY`] bits per byte as they are
//! (deflate's stored blocks, a memory copy), compressing the rest at [`GZIP_LEVEL`]. The
//! output is an ordinary gzip member that every reader accepts, and the same input always
//! gives the same bytes (so the same digest).
//!
//! Written by hand over flate2's raw `Compress`: `GzEncoder` cannot change its level
//! mid-stream, and `Compress::set_level` fails with the zlib-rs backend when it changes
//! deflate's strategy. Stored blocks are written here instead, between full flushes of the
//! compressor (a full flush byte-aligns its output and forgets its history, so no match
//! can reach back across the stored data).

use std::io::{self, Write};

use flate2::{Compress, Crc, FlushCompress, Status};

use crate::compression::GZIP_LEVEL;

/// Input is judged in blocks of this size.
const BLOCK: usize = 256 << 10;
/// Above this many bits of entropy per byte, deflate saves under about 1%: store instead.
const STORED_ENTROPY: f64 = 7.95;
/// The gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown (as Go's
/// and flate2's writers, so that the header never depends on the machine).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The adaptive gzip writer; [`AdaptiveGzip::finish`] writes the trailer.
pub struct AdaptiveGzip<W: Write> {
    inner: W,
    deflate: Compress,
    crc: Crc,
    pending: Vec<u8>,
    out: Vec<u8>,
    /// The compressor has had input since its last full flush.
    deflate_dirty: bool,
    header_written: bool,
}

impl<W: Write> AdaptiveGzip<W> {
    /// A writer into `inner`.
    pub fn new(inner: W) -> Self {
        AdaptiveGzip {
            inner,
            deflate: Compress::new(flate2::Compression::new(GZIP_LEVEL), false),
            crc: Crc::new(),
            pending: Vec::with_capacity(BLOCK),
            out: vec![0; BLOCK + (BLOCK >> 4) + 64],
            deflate_dirty: false,
            header_written: false,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.inner.write_all(&HEADER)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Runs deflate over `input` with `flush`, writing everything it produces.
    fn run(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<Status> {
        loop {
            let before_in = self.deflate.total_in();
            let before_out = self.deflate.total_out();
            let status = self
                .deflate
                .compress(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            let consumed = (self.deflate.total_in() - before_in) as usize;
            let produced = (self.deflate.total_out() - before_out) as usize;
            input = &input[consumed..];
            self.inner.write_all(&self.out[..produced])?;
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                // Output space left over means deflate has nothing more to give.
                _ => input.is_empty() && produced < self.out.len(),
            };
            if done {
                return Ok(status);
            }
        }
    }

    /// Compresses one block, or stores it when its entropy says deflate would not help.
    fn block(&mut self, data: Vec<u8>) -> io::Result<()> {
        self.header()?;
        self.crc.update(&data);
        if entropy(&data) > STORED_ENTROPY {
            if self.deflate_dirty {
                self.run(&[], FlushCompress::Full)?;
                self.deflate_dirty = false;
            }
            // Stored blocks: a header byte (not final, type 00, padding), LEN, NLEN, bytes.
            for piece in data.chunks(u16::MAX as usize) {
                let len = piece.len() as u16;
                self.inner.write_all(&[0])?;
                self.inner.write_all(&len.to_le_bytes())?;
                self.inner.write_all(&(!len).to_le_bytes())?;
                self.inner.write_all(piece)?;
            }
        } else {
            self.run(&data, FlushCompress::None)?;
            self.deflate_dirty = true;
        }
        self.pending = data;
        self.pending.clear();
        Ok(())
    }

    /// Compresses what is left, writes the trailer, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.block(rest)?;
        }
        self.header()?;
        // The final (possibly empty) block comes from the compressor.
        self.run(&[], FlushCompress::Finish)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for AdaptiveGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == BLOCK {
            let full = std::mem::take(&mut self.pending);
            self.block(full)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Shannon entropy of the bytes, in bits per byte (0 to 8).
fn entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let len = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        // xorshift: incompressible enough for deflate, reproducible.
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn gzip(data: &[u8], write_size: usize) -> Vec<u8> {
        let mut w = AdaptiveGzip::new(Vec::new());
        for chunk in data.chunks(write_size.max(1)) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn mixed_content_round_trips_and_only_text_shrinks() {
        let text: Vec<u8> = b"import numpy as np\n".repeat(40_000);
        let random = noise(1 << 20, 7);
        let mut data = text.clone();
        data.extend(&random);
        data.extend(&text);
        let packed = gzip(&data, 100_000);
        assert_eq!(gunzip(&packed), data);
        assert!(
            packed.len() < random.len() + random.len() / 50 + 20_000,
            "random data is stored, text compressed: {} bytes",
            packed.len()
        );
    }

    #[test]
    fn same_input_same_bytes_whatever_the_write_sizes() {
        let data = [noise(700_000, 3), b"abc".repeat(200_000)].concat();
        assert_eq!(gzip(&data, 1), gzip(&data, 1 << 20));
    }

    #[test]
    fn empty_and_tiny_inputs() {
        assert_eq!(gunzip(&gzip(b"", 10)), b"");
        assert_eq!(gunzip(&gzip(b"x", 10)), b"x");
    }
}
