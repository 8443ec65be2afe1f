//! A layer written by one thread while another reads it (a build step's or a commit's
//! changes going into the store), with no temporary file. The reader sees the writer's
//! failure as an error at the end of the data, so a layer cut short is never taken for a
//! whole one.

use std::io::{self, Read, Write};
use std::sync::mpsc;

/// Runs `write` on a thread of its own into a pipe, and `read` here on the pipe's other end;
/// returns what `read` returns. When `write` fails, the reader's last read is an error
/// naming why.
pub fn with_written_layer<T>(
    write: impl FnOnce(&mut dyn Write) -> Result<(), String> + Send,
    read: impl FnOnce(Box<dyn Read + Send + '_>) -> T,
) -> io::Result<T> {
    let (pipe, writer) = io::pipe()?;
    let (done_tx, done) = mpsc::sync_channel(1);
    Ok(std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut out = io::BufWriter::with_capacity(1 << 20, writer);
            let written = write(&mut out).and_then(|()| out.flush().map_err(|e| e.to_string()));
            // Sent before the pipe closes, so the reader has it at the end of the data.
            let _ = done_tx.send(written);
        });
        read(Box::new(io::BufReader::with_capacity(
            1 << 20,
            WrittenLayer {
                pipe,
                done: Some(done),
            },
        )))
    }))
}

/// The read end: its end is an error when the writer failed.
struct WrittenLayer {
    pipe: io::PipeReader,
    /// The writer's outcome, taken at the end of the data.
    done: Option<mpsc::Receiver<Result<(), String>>>,
}

impl Read for WrittenLayer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0
            && !buf.is_empty()
            && let Some(done) = self.done.take()
        {
            match done.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(io::Error::other(format!("write the layer: {e}"))),
                Err(_) => return Err(io::Error::other("the layer writer stopped")),
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_gets_the_data_and_the_writers_failure_at_the_end() {
        let got = with_written_layer(
            |out| out.write_all(b"layer").map_err(|e| e.to_string()),
            |mut r| {
                let mut s = Vec::new();
                r.read_to_end(&mut s).map(|_| s)
            },
        )
        .unwrap();
        assert_eq!(got.unwrap(), b"layer");

        let got = with_written_layer(
            |out| {
                out.write_all(b"half").map_err(|e| e.to_string())?;
                Err("a source vanished".into())
            },
            |mut r| {
                let mut s = Vec::new();
                r.read_to_end(&mut s)
            },
        )
        .unwrap();
        let err = got.unwrap_err().to_string();
        assert!(err.contains("a source vanished"), "{err}");
    }
}
