//! Layer blob compression: detecting it from magic bytes, decompressing for
//! unpack, and compressing for push.
//!
//! Layers come as gzip (`application/vnd.oci.image.layer.v1.tar+gzip`, and all
//! Docker schema 2 layers), zstd (`…tar+zstd`) or plain tar. Docker and
//! containerd also recognise bzip2 and xz by their magic bytes but cannot push
//! them; berth refuses them with [`CompressionError::Unsupported`] so that a
//! misdetected stream never reaches the tar reader as garbage.
//!
//! Gzip is read with `MultiGzDecoder`: a gzip file may hold several members
//! back to back (pigz and some registries produce them), and the layer is
//! their concatenation. Truncation is an error on read, never a short success:
//! a gzip member that ends early fails with `UnexpectedEof`, as does a zstd
//! frame.

use std::io::{self, BufRead, Read, Write};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];

/// The longest magic number [`Compression::detect`] looks at.
const MAGIC_LEN: usize = 6;

/// Gzip level for pushes: zlib's default, what Docker and containerd use.
pub const GZIP_LEVEL: u32 = 6;
/// Zstd level for pushes: zstd's default, what containerd uses.
pub const ZSTD_LEVEL: i32 = 3;

/// The compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip, possibly several members back to back (`…tar+gzip`).
    Gzip,
    /// zstd, possibly several frames back to back (`…tar+zstd`).
    Zstd,
}

/// Why a layer stream cannot be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// The stream is compressed with a format berth does not read: "bzip2"
    /// or "xz".
    #[error("unsupported layer compression {0}")]
    Unsupported(&'static str),
    /// Reading the stream's first bytes, or setting up the decoder, failed.
    #[error("reading compressed layer")]
    Io(#[from] io::Error),
}

impl Compression {
    /// Detects the compression from the first bytes of a stream.
    ///
    /// `prefix` should hold at least 6 bytes when the stream has them; a
    /// shorter prefix that only starts a magic number is taken as uncompressed.
    pub fn detect(prefix: &[u8]) -> Result<Compression, CompressionError> {
        if prefix.starts_with(GZIP_MAGIC) {
            Ok(Compression::Gzip)
        } else if prefix.starts_with(ZSTD_MAGIC) {
            Ok(Compression::Zstd)
        } else if prefix.starts_with(BZIP2_MAGIC) {
            Err(CompressionError::Unsupported("bzip2"))
        } else if prefix.starts_with(XZ_MAGIC) {
            Err(CompressionError::Unsupported("xz"))
        } else {
            Ok(Compression::None)
        }
    }
}

/// Peeks at the stream, returns its compression and a reader of the
/// decompressed bytes.
///
/// Nothing is lost by the peek: when `r` cannot show enough bytes without
/// consuming them, the bytes read are put back in front of the rest.
pub fn decompress<'a, R: BufRead + Send + 'a>(
    mut r: R,
) -> Result<(Compression, Box<dyn Read + Send + 'a>), CompressionError> {
    let buffered = fill_buf_retrying(&mut r)?;
    if buffered.len() >= MAGIC_LEN {
        let compression = Compression::detect(buffered)?;
        return Ok((compression, decoder(compression, r)?));
    }
    // The buffer holds fewer bytes than the longest magic (a short read, or a
    // stream that short): read the prefix out and chain it back in front.
    let mut prefix = [0u8; MAGIC_LEN];
    let mut len = 0;
    while len < MAGIC_LEN {
        match r.read(&mut prefix[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let compression = Compression::detect(&prefix[..len])?;
    let chained = io::Cursor::new(prefix).take(len as u64).chain(r);
    Ok((compression, decoder(compression, chained)?))
}

fn fill_buf_retrying<R: BufRead>(r: &mut R) -> io::Result<&[u8]> {
    // `fill_buf` cannot be retried in a loop that returns its borrow (the
    // borrow checker rejects it), so retry only to get past EINTR first.
    loop {
        match r.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    r.fill_buf()
}

fn decoder<'a, R: BufRead + Send + 'a>(
    compression: Compression,
    r: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

/// A compressing writer for pushes. Call [`Compressor::finish`] to write the
/// trailer and get the inner writer back; dropping it instead may leave the
/// stream unterminated.
pub struct Compressor<W: Write> {
    inner: Encoder<W>,
}

enum Encoder<W: Write> {
    None(W),
    Gzip(crate::gzip::AdaptiveGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> std::fmt::Debug for Compressor<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Compressor")
            .field(&self.compression())
            .finish()
    }
}

impl<W: Write> Compressor<W> {
    /// A compressor for `compression` at its default level ([`GZIP_LEVEL`],
    /// [`ZSTD_LEVEL`]); [`Compression::None`] passes bytes through.
    pub fn new(w: W, compression: Compression) -> io::Result<Self> {
        let inner = match compression {
            Compression::None => Encoder::None(w),
            Compression::Gzip => Encoder::Gzip(crate::gzip::AdaptiveGzip::new(w)),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?),
        };
        Ok(Compressor { inner })
    }

    /// The compression this writer applies.
    pub fn compression(&self) -> Compression {
        match self.inner {
            Encoder::None(_) => Compression::None,
            Encoder::Gzip(_) => Compression::Gzip,
            Encoder::Zstd(_) => Compression::Zstd,
        }
    }

    /// Writes the stream's trailer and returns the inner writer, flushed.
    pub fn finish(self) -> io::Result<W> {
        let mut w = match self.inner {
            Encoder::None(w) => w,
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Zstd(e) => e.finish()?,
        };
        w.flush()?;
        Ok(w)
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Encoder::None(w) => w.write_all(buf),
            Encoder::Gzip(e) => e.write_all(buf),
            Encoder::Zstd(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// A gzip compressor at level [`GZIP_LEVEL`], storing incompressible blocks as they are
/// (see [`crate::gzip`]).
pub fn compress_gzip<W: Write>(w: W) -> Compressor<W> {
    Compressor {
        inner: Encoder::Gzip(crate::gzip::AdaptiveGzip::new(w)),
    }
}

/// A zstd compressor at level [`ZSTD_LEVEL`].
pub fn compress_zstd<W: Write>(w: W) -> io::Result<Compressor<W>> {
    Compressor::new(w, Compression::Zstd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn payload() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn roundtrip(c: Compression) {
        let data = payload();
        let mut enc = Compressor::new(Vec::new(), c).unwrap();
        enc.write_all(&data).unwrap();
        let blob = enc.finish().unwrap();
        assert_eq!(Compression::detect(&blob).unwrap(), c);
        let (detected, mut r) = decompress(&blob[..]).unwrap();
        assert_eq!(detected, c);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn roundtrips() {
        roundtrip(Compression::None);
        roundtrip(Compression::Gzip);
        roundtrip(Compression::Zstd);
    }

    #[test]
    fn detects_magic() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 8, 0]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(b"hello world").unwrap(),
            Compression::None
        );
        assert_eq!(Compression::detect(b"").unwrap(), Compression::None);
        // A tar header starts with the file name.
        assert_eq!(
            Compression::detect(b"etc/\0\0\0\0").unwrap(),
            Compression::None
        );
        assert!(matches!(
            Compression::detect(b"BZh91AY&SY"),
            Err(CompressionError::Unsupported("bzip2"))
        ));
        assert!(matches!(
            Compression::detect(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 4]),
            Err(CompressionError::Unsupported("xz"))
        ));
        // Only the start of the xz magic: not xz.
        assert_eq!(
            Compression::detect(&[0xfd, 0x37, 0x7a]).unwrap(),
            Compression::None
        );
        assert!(matches!(
            decompress(&b"BZh91AY&SY"[..]),
            Err(CompressionError::Unsupported("bzip2"))
        ));
    }

    #[test]
    fn gzip_and_zstd_helpers() {
        let mut gz = compress_gzip(Vec::new());
        gz.write_all(b"abc").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(&gz[..2], GZIP_MAGIC);
        let mut zs = compress_zstd(Vec::new()).unwrap();
        zs.write_all(b"abc").unwrap();
        let zs = zs.finish().unwrap();
        assert_eq!(&zs[..4], ZSTD_MAGIC);
    }

    #[test]
    fn multi_member_gzip() {
        let mut blob = Vec::new();
        for part in [&b"first member, "[..], b"second member, ", b"third"] {
            let mut enc = compress_gzip(Vec::new());
            enc.write_all(part).unwrap();
            blob.extend(enc.finish().unwrap());
        }
        let (c, mut r) = decompress(&blob[..]).unwrap();
        assert_eq!(c, Compression::Gzip);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "first member, second member, third");
    }

    #[test]
    fn multi_frame_zstd() {
        let mut blob = Vec::new();
        for part in [&b"one "[..], b"two"] {
            let mut enc = compress_zstd(Vec::new()).unwrap();
            enc.write_all(part).unwrap();
            blob.extend(enc.finish().unwrap());
        }
        let (_, mut r) = decompress(&blob[..]).unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "one two");
    }

    fn assert_truncation_fails(c: Compression) {
        let data = payload();
        let mut enc = Compressor::new(Vec::new(), c).unwrap();
        enc.write_all(&data).unwrap();
        let blob = enc.finish().unwrap();
        // Cut in the middle of the data, and also just before the trailer.
        for cut in [blob.len() / 2, blob.len() - 4, blob.len() - 1] {
            let (_, mut r) = decompress(&blob[..cut]).unwrap();
            let mut out = Vec::new();
            let err = r
                .read_to_end(&mut out)
                .expect_err(&format!("{c:?} cut at {cut} of {} read fine", blob.len()));
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{c:?}: {err}");
        }
    }

    #[test]
    fn truncated_gzip_fails() {
        assert_truncation_fails(Compression::Gzip);
    }

    #[test]
    fn truncated_zstd_fails() {
        assert_truncation_fails(Compression::Zstd);
    }

    #[test]
    fn gzip_garbage_after_member_fails() {
        let mut enc = compress_gzip(Vec::new());
        enc.write_all(b"data").unwrap();
        let mut blob = enc.finish().unwrap();
        blob.extend_from_slice(&[0x1f, 0x8b, 0xff, 0xff, 0xff]);
        let (_, mut r) = decompress(&blob[..]).unwrap();
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }

    /// A reader that hands out one byte per read, so `fill_buf` shows less
    /// than the magic.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn short_reads_do_not_lose_the_prefix() {
        let mut enc = compress_zstd(Vec::new()).unwrap();
        enc.write_all(b"trickled").unwrap();
        let blob = enc.finish().unwrap();
        let (c, mut r) = decompress(BufReader::with_capacity(1, Trickle(&blob))).unwrap();
        assert_eq!(c, Compression::Zstd);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "trickled");

        for stream in [&b""[..], b"ab", b"plain text, long enough"] {
            let (c, mut r) = decompress(BufReader::with_capacity(1, Trickle(stream))).unwrap();
            assert_eq!(c, Compression::None);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, stream);
        }
    }
}
