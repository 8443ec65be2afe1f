//! Docker's json-file log driver: the writer that turns a container's stdout/stderr into
//! `<id>-json.log` (one JSON object per line, rotated by size) and the reader behind
//! `berth logs` (`--tail`, `--since`, `--until`, `--follow`).
//!
//! Files are byte-compatible with what dockerd writes, so logs can be read by tools that
//! know Docker's format. Readers and the writer share nothing but the files: a reader copes
//! with a writer appending (a torn last line is left for later) and rotating under it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::Offset;
use serde::{Deserialize, Serialize};

/// Docker's copier reads into a 16 KiB buffer; a line that fills it is logged as a partial.
const MAX_LINE: usize = 16 * 1024;

/// `max-size` goes through go-units' `FromHumanSize` in dockerd, which is SI (1k = 1000).
const SIZE_UNIT: u64 = 1000;

/// How often `follow` looks for growth; polling keeps it free of inotify.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long `follow` keeps trying to find the file after one that rotation renamed.
const SUCCESSOR_TRIES: u32 = 2000;
const SUCCESSOR_PAUSE: Duration = Duration::from_millis(1);

/// Read size for scanning files, forward and backward.
const BLOCK: usize = 64 * 1024;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The container's standard output (also a tty's only stream).
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    /// The name as it appears in the log file's `stream` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// `--log-opt` for the json-file driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Rotate once the file has reached this many bytes; `None` never rotates.
    pub max_size: Option<u64>,
    /// How many files to keep, the live one included (at least 1; 1 truncates instead of
    /// keeping a rotated file). Only used with `max_size`.
    pub max_file: u32,
}

impl Default for LogConfig {
    /// No rotation, one file: Docker's defaults for json-file.
    fn default() -> Self {
        LogConfig {
            max_size: None,
            max_file: 1,
        }
    }
}

impl LogConfig {
    /// From `--log-opt key=value` pairs: `max-size` (a positive size such as `10m`, `1k`, `1g`
    /// or plain bytes, with dockerd's SI multiples: `1k` is 1000 bytes) and `max-file` (an
    /// integer >= 1, default 1; only meaningful with `max-size`, as in Docker). Any other key
    /// is refused. Errors carry Docker's wording.
    pub fn from_opts<'a>(
        opts: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LogConfig, String> {
        let mut size_opt = None;
        let mut file_opt = None;
        // Docker validates every key before parsing any value.
        for (key, value) in opts {
            match key {
                "max-size" => size_opt = Some(value),
                "max-file" => file_opt = Some(value),
                _ => return Err(format!("unknown log opt '{key}' for json-file log driver")),
            }
        }
        let max_size = match size_opt {
            None => None,
            Some(value) => match parse_size(value)? {
                0 => return Err("max-size must be a positive number".to_owned()),
                n => Some(n),
            },
        };
        let max_file = match file_opt {
            None => 1,
            Some(value) => {
                let n = parse_go_int(value)?;
                if n < 1 {
                    return Err("max-file cannot be less than 1".to_owned());
                }
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        };
        Ok(LogConfig { max_size, max_file })
    }
}

/// go-units' size syntax: a decimal number, an optional space, then an optional suffix
/// `b`, or `k`/`m`/`g`/`t`/`p` optionally followed by `b` or `ib` (any case).
fn parse_size(value: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size: '{value}'");
    let sep = value
        .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .ok_or_else(invalid)?;
    let (num, suffix) = if value.as_bytes()[sep] == b' ' {
        (&value[..sep], &value[sep + 1..])
    } else {
        (&value[..=sep], &value[sep + 1..])
    };
    let well_formed = num.bytes().any(|b| b.is_ascii_digit())
        && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && num.bytes().filter(|&b| b == b'.').count() <= 1;
    if !well_formed {
        return Err(invalid());
    }
    let number: f64 = num.parse().map_err(|_| invalid())?;
    if suffix.len() > 3 {
        return Err(format!("invalid suffix: '{suffix}'"));
    }
    let lower = suffix.to_ascii_lowercase();
    let bad_suffix = || format!("invalid suffix: '{lower}'");
    let mut chars = lower.chars();
    let power = match chars.next() {
        None => 0,
        Some('b') if lower.len() == 1 => 0,
        Some('k') => 1,
        Some('m') => 2,
        Some('g') => 3,
        Some('t') => 4,
        Some('p') => 5,
        Some(_) => return Err(bad_suffix()),
    };
    if power > 0 && !matches!(chars.as_str(), "" | "b" | "ib") {
        return Err(bad_suffix());
    }
    // Go converts the float product to an integer, dropping any fraction of a byte.
    Ok((number * SIZE_UNIT.pow(power) as f64) as u64)
}

/// Go's `strconv.Atoi`, with its error text.
fn parse_go_int(value: &str) -> Result<i64, String> {
    value.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("strconv.Atoi: parsing {value:?}: {why}")
    })
}

/// Appends a container's output to `<path>` in Docker's json-file format, one JSON object
/// per line:
///
/// ```text
/// {"log":"hello\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}
/// ```
///
/// Rotation follows dockerd: before an entry is written, if the file has already reached
/// `max_size`, `path.(max_file-2)` → `path.(max_file-1)`, …, `path` → `path.1` and a new
/// empty `path` is started (the oldest file is dropped). With `max_file == 1` the file is
/// truncated instead. A file can thus pass `max_size` by up to one entry, as Docker's do.
///
/// Partial lines are held in memory; call [`LogWriter::flush_partial`] at each stream's
/// end or they are lost when the writer is dropped.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    config: LogConfig,
    /// Bytes of an unfinished line, per stream (indexed by `Stream::index`).
    pending: [Vec<u8>; 2],
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl LogWriter {
    /// Opens `path` for appending, creating it with mode 0640 as dockerd does, and takes its
    /// current size as the starting point for rotation.
    pub fn open(path: &Path, config: LogConfig) -> io::Result<LogWriter> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            size,
            config,
            pending: [Vec::new(), Vec::new()],
            buf: Vec::new(),
        })
    }

    /// Logs raw output bytes of one stream as read from a pipe or pty. Each complete line
    /// (ending in `\n`, which it keeps) becomes one entry; the rest is kept until its newline
    /// arrives. An unfinished line that reaches 16 KiB is written as an entry of its own,
    /// without `\n`, as Docker's copier does.
    pub fn write(&mut self, stream: Stream, bytes: &[u8], now: Timestamp) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut self.pending[stream.index()]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        let result = loop {
            let rest = &pending[start..];
            // Only the first 16 KiB count: Docker never sees a newline beyond its buffer.
            let window = &rest[..rest.len().min(MAX_LINE)];
            let take = match window.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None if rest.len() >= MAX_LINE => MAX_LINE,
                None => break Ok(()),
            };
            if let Err(e) = self.write_entry(stream, &rest[..take], now) {
                break Err(e);
            }
            start += take;
        };
        pending.drain(..start);
        self.pending[stream.index()] = pending;
        result
    }

    /// Writes out a stream's unfinished line (at the end of that stream) as it is, without
    /// adding a newline. Does nothing when there is none.
    pub fn flush_partial(&mut self, stream: Stream, now: Timestamp) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending[stream.index()]);
        if pending.is_empty() {
            return Ok(());
        }
        self.write_entry(stream, &pending, now)
    }

    fn write_entry(&mut self, stream: Stream, line: &[u8], now: Timestamp) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_entry(&mut buf, stream, line, now);
        let result = self.append(&buf);
        self.buf = buf;
        result
    }

    fn append(&mut self, entry: &[u8]) -> io::Result<()> {
        if self.config.max_size.is_some_and(|max| self.size >= max) {
            self.rotate()?;
        }
        // One write per entry, so concurrent readers see whole lines as soon as possible.
        self.file.write_all(entry)?;
        self.size += entry.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let max_file = self.config.max_file.max(1);
        if max_file >= 2 {
            ignore_missing(fs::remove_file(rotated_path(&self.path, max_file - 1)))?;
            for i in (2..max_file).rev() {
                ignore_missing(fs::rename(
                    rotated_path(&self.path, i - 1),
                    rotated_path(&self.path, i),
                ))?;
            }
            ignore_missing(fs::rename(&self.path, rotated_path(&self.path, 1)))?;
        }
        // Reopen by name like dockerd's O_TRUNC: a new file after the renames, the same one
        // emptied with max_file 1.
        let file = open_append(&self.path)?;
        file.set_len(0)?;
        self.file = file;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `path.N`, the name of the N-th rotated file.
fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// One line of the file, exactly as dockerd's hand-written marshaller lays it out.
fn encode_entry(buf: &mut Vec<u8>, stream: Stream, line: &[u8], time: Timestamp) {
    buf.extend_from_slice(b"{\"log\":\"");
    escape_json(buf, line);
    buf.extend_from_slice(b"\",\"stream\":\"");
    buf.extend_from_slice(stream.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"time\":\"");
    buf.extend_from_slice(rfc3339_nano(time).as_bytes());
    buf.extend_from_slice(b"\"}\n");
}

/// JSON string body the way dockerd escapes it: HTML-safe (`<`, `>`, `&` as `\u00XX`),
/// `\n`/`\r` short, other controls as `\u00XX`, U+2028/2029 escaped, and each byte of an
/// invalid UTF-8 sequence replaced by `\ufffd` (Go decodes invalid input one byte at a time).
fn escape_json(buf: &mut Vec<u8>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                escape_str(buf, text);
                return;
            }
            Err(err) => {
                let (valid, rest) = bytes.split_at(err.valid_up_to());
                if let Ok(text) = std::str::from_utf8(valid) {
                    escape_str(buf, text);
                }
                let bad = err.error_len().unwrap_or(rest.len());
                for _ in 0..bad {
                    buf.extend_from_slice(b"\\ufffd");
                }
                bytes = &rest[bad..];
            }
        }
    }
}

fn escape_str(buf: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for c in text.chars() {
        match c {
            '\\' | '"' => buf.extend_from_slice(&[b'\\', c as u8]),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\u{2028}' => buf.extend_from_slice(b"\\u2028"),
            '\u{2029}' => buf.extend_from_slice(b"\\u2029"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                let b = c as u8;
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
            c => {
                let mut utf8 = [0; 4];
                buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The stream the line came from.
    pub stream: Stream,
    /// When the engine read the line.
    pub time: Timestamp,
    /// The line as logged, with its trailing `\n` when it had one.
    pub line: Vec<u8>,
}

impl LogEntry {
    /// The line as `logs` shows it: after its time (RFC 3339 with nanoseconds) and a space
    /// with `timestamps`.
    pub fn shown(&self, timestamps: bool) -> Vec<u8> {
        let mut line = Vec::with_capacity(self.line.len() + if timestamps { 36 } else { 0 });
        if timestamps {
            line.extend_from_slice(rfc3339_nano(self.time).as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(&self.line);
        line
    }
}

/// `berth logs` options.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Only the last N entries of the history (after `since`/`until`); `None` is all,
    /// `Some(0)` none (following still shows new ones).
    pub tail: Option<usize>,
    /// Entries strictly before this time are skipped, as Docker does.
    pub since: Option<Timestamp>,
    /// Entries after this time are skipped, and following ends at the first one.
    pub until: Option<Timestamp>,
}

impl ReadOptions {
    /// From Docker's `tail` (`all`, empty, or a count; a negative count is all) and
    /// `since`/`until` values ([`parse_time_arg`]), as `logs` and the Engine API take them.
    pub fn from_docker(
        tail: &str,
        since: Option<&str>,
        until: Option<&str>,
        now: Timestamp,
    ) -> Result<ReadOptions, String> {
        let time = |v: Option<&str>| v.map(|v| parse_time_arg(v, now)).transpose();
        let tail = match tail {
            "all" | "" => None,
            n => match n.parse::<i64>() {
                Ok(n) => usize::try_from(n).ok(),
                Err(_) => return Err(format!("invalid value for \"tail\": {n:?}")),
            },
        };
        Ok(ReadOptions {
            tail,
            since: time(since)?,
            until: time(until)?,
        })
    }
}

/// The fields Docker writes; `attrs` and anything else is ignored.
#[derive(Deserialize)]
struct RawEntry {
    // dockerd omits empty `log` and `stream` (`omitempty`).
    #[serde(default)]
    log: String,
    #[serde(default)]
    stream: Option<Stream>,
    time: String,
}

/// A complete line of a log file, or `None` when it is not a valid entry.
fn parse_line(raw: &[u8]) -> Option<LogEntry> {
    let entry: RawEntry = serde_json::from_slice(raw).ok()?;
    let time = entry.time.parse::<Timestamp>().ok()?;
    Some(LogEntry {
        stream: entry.stream.unwrap_or(Stream::Stdout),
        time,
        line: entry.log.into_bytes(),
    })
}

enum Verdict {
    Emit,
    Skip,
    PastUntil,
}

fn judge(entry: &LogEntry, opts: &ReadOptions) -> Verdict {
    if opts.since.is_some_and(|since| entry.time < since) {
        Verdict::Skip
    } else if opts.until.is_some_and(|until| entry.time > until) {
        Verdict::PastUntil
    } else {
        Verdict::Emit
    }
}

/// Device and inode: how a file is recognised after being renamed.
type FileId = (u64, u64);

fn file_id(meta: &fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// An open log file and its length when opened (what a one-shot read looks at).
struct Segment {
    file: File,
    id: FileId,
    end: u64,
}

fn open_segment(path: &Path) -> io::Result<Option<Segment>> {
    match File::open(path) {
        Ok(file) => {
            let meta = file.metadata()?;
            Ok(Some(Segment {
                id: file_id(&meta),
                end: meta.len(),
                file,
            }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The rotated files (oldest first) and the live one. Opened newest first: a rotation in
/// between only moves files to higher numbers, so a file is at worst seen twice (dropped by
/// its inode), never skipped, save the oldest one that rotation deletes.
fn open_segments(path: &Path) -> io::Result<(Vec<Segment>, Option<Segment>)> {
    let current = open_segment(path)?;
    let mut seen: Vec<FileId> = current.iter().map(|s| s.id).collect();
    let mut rotated = Vec::new();
    let mut misses = 0;
    let mut n = 1;
    // A rotation running right now can leave one number briefly empty, hence two misses.
    while misses < 2 {
        match open_segment(&rotated_path(path, n))? {
            Some(seg) => {
                misses = 0;
                if !seen.contains(&seg.id) {
                    seen.push(seg.id);
                    rotated.push(seg);
                }
            }
            None => misses += 1,
        }
        n += 1;
    }
    rotated.reverse();
    Ok((rotated, current))
}

/// `Read` over `file[pos..end]` by offset, leaving the file's own cursor alone.
struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Decodes the complete lines of `file[start..end]` in order, passing each entry to
/// `on_entry` until it returns true. Returns the offset after the last complete line read
/// (an unfinished line is left for a later call) and whether `on_entry` stopped the scan.
/// `last` receives the last complete line's raw bytes.
fn scan_forward(
    file: &File,
    start: u64,
    end: u64,
    last: &mut Vec<u8>,
    on_entry: &mut dyn FnMut(LogEntry) -> io::Result<bool>,
) -> io::Result<(u64, bool)> {
    let mut reader = BufReader::with_capacity(
        BLOCK,
        RangeReader {
            file,
            pos: start,
            end,
        },
    );
    let mut pos = start;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok((pos, false));
        }
        pos += n as u64;
        last.clone_from(&line);
        if let Some(entry) = parse_line(&line)
            && on_entry(entry)?
        {
            return Ok((pos, true));
        }
    }
}

/// What `scan_backward` found.
struct Backward {
    /// `on_line` asked to stop.
    stopped: bool,
    /// Offset after the last complete line before `end`.
    complete_end: u64,
}

/// Passes the complete lines of `file[..end]` to `on_line`, last first, until it returns
/// true. Reading from the end in blocks lets `--tail` skip most of a long history.
fn scan_backward(
    file: &File,
    end: u64,
    on_line: &mut dyn FnMut(&[u8]) -> bool,
) -> io::Result<Backward> {
    let mut pos = end;
    // Bytes from `pos` on not yet passed; once trimmed, it ends with a whole line.
    let mut carry: Vec<u8> = Vec::new();
    let mut complete_end = None;
    loop {
        if pos > 0 {
            let n = pos.min(BLOCK as u64);
            pos -= n;
            let mut block = vec![0; n as usize];
            file.read_exact_at(&mut block, pos)?;
            block.extend_from_slice(&carry);
            carry = block;
        }
        if complete_end.is_none() {
            // Drop an unfinished last line: a writer may be in the middle of it.
            match carry.iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    carry.truncate(i + 1);
                    complete_end = Some(pos + i as u64 + 1);
                }
                None if pos == 0 => {
                    return Ok(Backward {
                        stopped: false,
                        complete_end: 0,
                    });
                }
                None => continue,
            }
        }
        let complete_end = complete_end.unwrap_or(0);
        // Every line but the first in `carry` is whole (the first may have begun before `pos`).
        while let Some(j) = carry[..carry.len() - 1].iter().rposition(|&b| b == b'\n') {
            if on_line(&carry[j + 1..]) {
                return Ok(Backward {
                    stopped: true,
                    complete_end,
                });
            }
            carry.truncate(j + 1);
        }
        if pos == 0 {
            let stopped = on_line(&carry);
            return Ok(Backward {
                stopped,
                complete_end,
            });
        }
    }
}

/// Where the one-shot part of a read ended in the live file.
struct HistoryEnd {
    /// Offset after the last complete line of the live file that was looked at.
    pos: u64,
    /// That line's raw bytes, to notice the file being truncated and rewritten.
    last: Vec<u8>,
    /// An entry after `until` was met.
    past_until: bool,
}

/// Emits what `read` returns, in order, from already opened files.
fn history(
    rotated: &[Segment],
    current: Option<&Segment>,
    opts: &ReadOptions,
    emit: &mut dyn FnMut(LogEntry) -> io::Result<()>,
) -> io::Result<HistoryEnd> {
    let mut past_until = false;
    let Some(n) = opts.tail else {
        let mut on_entry = |entry: LogEntry| -> io::Result<bool> {
            match judge(&entry, opts) {
                Verdict::Emit => emit(entry)?,
                Verdict::Skip => {}
                Verdict::PastUntil => past_until = true,
            }
            Ok(false)
        };
        let mut last = Vec::new();
        for seg in rotated {
            scan_forward(&seg.file, 0, seg.end, &mut last, &mut on_entry)?;
        }
        last.clear();
        let mut pos = 0;
        if let Some(seg) = current {
            (pos, _) = scan_forward(&seg.file, 0, seg.end, &mut last, &mut on_entry)?;
        }
        return Ok(HistoryEnd {
            pos,
            last,
            past_until,
        });
    };

    let mut picked: Vec<LogEntry> = Vec::new();
    let mut take = |raw: &[u8]| -> bool {
        if n == 0 {
            return true;
        }
        if let Some(entry) = parse_line(raw) {
            match judge(&entry, opts) {
                Verdict::Emit => picked.push(entry),
                Verdict::Skip => {}
                Verdict::PastUntil => past_until = true,
            }
        }
        picked.len() >= n
    };
    let mut end = HistoryEnd {
        pos: 0,
        last: Vec::new(),
        past_until: false,
    };
    let mut done = false;
    if let Some(seg) = current {
        let mut last = None;
        let found = scan_backward(&seg.file, seg.end, &mut |raw| {
            if last.is_none() {
                last = Some(raw.to_vec());
            }
            take(raw)
        })?;
        end.pos = found.complete_end;
        end.last = last.unwrap_or_default();
        done = found.stopped;
    }
    if !done {
        for seg in rotated.iter().rev() {
            if scan_backward(&seg.file, seg.end, &mut take)?.stopped {
                break;
            }
        }
    }
    end.past_until = past_until;
    for entry in picked.into_iter().rev() {
        emit(entry)?;
    }
    Ok(end)
}

/// Every entry of the log at `path` and its rotated files (oldest first: `path.N` … `path.1`,
/// `path`), filtered by `opts`: `since`/`until` first, then the last `tail` entries. A missing
/// log is an empty log; a line that does not decode (such as one torn by a crash, or still
/// being written) is skipped.
pub fn read(path: &Path, opts: &ReadOptions) -> io::Result<Vec<LogEntry>> {
    let (rotated, current) = open_segments(path)?;
    let mut entries = Vec::new();
    history(&rotated, current.as_ref(), opts, &mut |entry| {
        entries.push(entry);
        Ok(())
    })?;
    Ok(entries)
}

/// The live file being followed and how far it has been read.
struct Cursor {
    file: File,
    id: FileId,
    pos: u64,
    /// The last complete line read, ending at `pos`.
    last: Vec<u8>,
}

impl Cursor {
    fn new(file: File, id: FileId) -> Cursor {
        Cursor {
            file,
            id,
            pos: 0,
            last: Vec::new(),
        }
    }

    /// Whether the file was emptied in place (max-file 1) since it was read: shorter than
    /// what was read, or no longer holding the last line read where it was.
    fn truncated(&self, len: u64) -> io::Result<bool> {
        if len < self.pos {
            return Ok(true);
        }
        if self.last.is_empty() {
            return Ok(false);
        }
        let mut seen = vec![0; self.last.len()];
        match self
            .file
            .read_exact_at(&mut seen, self.pos - self.last.len() as u64)
        {
            Ok(()) => Ok(seen != self.last),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// The file that came after a followed one which rotation renamed.
enum Next {
    File(File, FileId),
    /// The rotation is under way (the new live file is not there yet).
    Wait,
    /// The followed file is gone from the rotated set; start over at the live file.
    Lost,
}

/// Finds the file written after the one with `id`: if that is now `path.k`, the next one is
/// `path.(k-1)` (or `path` for k = 1). Checking that `id` is still at `path.k` after opening
/// proves no rotation slipped in between, since files only ever move up. A writer rotating
/// in a burst can keep moving files while this looks; it then pauses briefly and looks again.
fn successor(path: &Path, id: FileId) -> io::Result<Next> {
    let mut not_found = 0;
    for attempt in 0..SUCCESSOR_TRIES {
        if attempt > 0 {
            thread::sleep(SUCCESSOR_PAUSE);
        }
        let mut found = None;
        let mut misses = 0;
        let mut n = 1;
        while misses < 2 {
            match fs::metadata(rotated_path(path, n)) {
                Ok(meta) => {
                    misses = 0;
                    if file_id(&meta) == id {
                        found = Some(n);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => misses += 1,
                Err(e) => return Err(e),
            }
            n += 1;
        }
        let Some(k) = found else {
            // Dropped as the oldest file, unless a rotation hid it from this scan.
            not_found += 1;
            if not_found >= 3 {
                return Ok(Next::Lost);
            }
            continue;
        };
        let next_path = if k == 1 {
            path.to_owned()
        } else {
            rotated_path(path, k - 1)
        };
        let file = match File::open(&next_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if k == 1 {
                    return Ok(Next::Wait);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let still_there = match fs::metadata(rotated_path(path, k)) {
            Ok(meta) => file_id(&meta) == id,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        let next_id = file_id(&file.metadata()?);
        if still_there && next_id != id {
            return Ok(Next::File(file, next_id));
        }
    }
    // Rotating faster than it can be tracked for seconds on end: give up on the gap.
    Ok(Next::Lost)
}

/// Emits everything appended since the last call, following rotations. Returns true once an
/// entry passed `until`.
fn drain(
    state: &mut Option<Cursor>,
    path: &Path,
    opts: &ReadOptions,
    emit: &mut dyn FnMut(&LogEntry) -> io::Result<()>,
) -> io::Result<bool> {
    let mut on_entry = |entry: LogEntry| -> io::Result<bool> {
        match judge(&entry, opts) {
            Verdict::Emit => {
                emit(&entry)?;
                Ok(false)
            }
            Verdict::Skip => Ok(false),
            Verdict::PastUntil => Ok(true),
        }
    };
    loop {
        let Some(cur) = state.as_mut() else {
            // No log yet (or lost track of it): read the live file from its start.
            let Some(seg) = open_segment(path)? else {
                return Ok(false);
            };
            *state = Some(Cursor::new(seg.file, seg.id));
            continue;
        };
        let len = cur.file.metadata()?.len();
        if cur.truncated(len)? {
            cur.pos = 0;
            cur.last.clear();
        }
        if len > cur.pos {
            let (pos, past_until) =
                scan_forward(&cur.file, cur.pos, len, &mut cur.last, &mut on_entry)?;
            cur.pos = pos;
            if past_until {
                return Ok(true);
            }
        }
        let rotated = match fs::metadata(path) {
            Ok(meta) => file_id(&meta) != cur.id,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
        };
        if !rotated {
            return Ok(false);
        }
        // Renamed away: the writer is done with it, but may have appended after the read
        // above and before the rename, so finish it first.
        let len = cur.file.metadata()?.len();
        if len > cur.pos {
            let (pos, past_until) =
                scan_forward(&cur.file, cur.pos, len, &mut cur.last, &mut on_entry)?;
            cur.pos = pos;
            if past_until {
                return Ok(true);
            }
        }
        match successor(path, cur.id)? {
            Next::File(file, id) => *state = Some(Cursor::new(file, id)),
            Next::Wait => return Ok(false),
            Next::Lost => *state = None,
        }
    }
}

/// `logs -f`: emits what [`read`] would, then entries as they are appended, following
/// rotation (the live file renamed away or truncated: reading resumes at the start of the
/// next file, after finishing the old one). Ends when `stopped()` returns true and
/// everything written until then has been emitted, when an entry passes `until`, or when
/// `emit` fails (its error, such as `BrokenPipe`, is returned as is).
///
/// Polls every 50 ms; `stopped` is checked on each poll, before draining.
pub fn follow(
    path: &Path,
    opts: &ReadOptions,
    emit: &mut dyn FnMut(&LogEntry) -> io::Result<()>,
    stopped: &mut dyn FnMut() -> bool,
) -> io::Result<()> {
    let (rotated, current) = open_segments(path)?;
    let end = history(&rotated, current.as_ref(), opts, &mut |entry| emit(&entry))?;
    drop(rotated);
    if end.past_until {
        return Ok(());
    }
    let mut state = current.map(|seg| Cursor {
        file: seg.file,
        id: seg.id,
        pos: end.pos,
        last: end.last,
    });
    loop {
        // Sampled before draining: once the producer has stopped, one more drain is complete.
        let stop = stopped();
        if drain(&mut state, path, opts, emit)? || stop {
            return Ok(());
        }
        thread::sleep(POLL_INTERVAL);
    }
}

pub use berth_store::parse_time_arg;

/// Go's RFC3339Nano form of a timestamp in UTC, as dockerd writes it and `logs -t` prints
/// it: `2024-05-01T10:00:00.12345Z`, trailing zeros of the fraction dropped, no fraction
/// when it is zero.
pub fn rfc3339_nano(t: Timestamp) -> String {
    let dt = Offset::UTC.to_datetime(t);
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let nanos = dt.subsec_nanosecond();
    if nanos != 0 {
        let digits = format!("{nanos:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn ts(secs: i64, nanos: i32) -> Timestamp {
        Timestamp::new(secs, nanos).unwrap()
    }

    /// 2024-05-01T10:00:00Z
    const T0: i64 = 1_714_557_600;

    fn lines(entries: &[LogEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8(e.line.clone()).unwrap())
            .collect()
    }

    fn writer(path: &Path, max_size: Option<u64>, max_file: u32) -> LogWriter {
        LogWriter::open(path, LogConfig { max_size, max_file }).unwrap()
    }

    #[test]
    fn json_shape_is_dockers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = writer(&path, None, 1);
        w.write(Stream::Stdout, b"hello\n", ts(T0, 123_456_789))
            .unwrap();
        w.write(Stream::Stderr, b"oops\n", ts(T0 + 1, 0)).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:00.123456789Z\"}\n\
             {\"log\":\"oops\\n\",\"stream\":\"stderr\",\"time\":\"2024-05-01T10:00:01Z\"}\n"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    }

    #[test]
    fn escaping_matches_dockerd() {
        let mut buf = Vec::new();
        escape_json(
            &mut buf,
            "a\"b\\c\td<e>&f\r\n\u{1}\u{2028}é\u{1F600}".as_bytes(),
        );
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "a\\\"b\\\\c\\u0009d\\u003ce\\u003e\\u0026f\\r\\n\\u0001\\u2028é\u{1F600}"
        );
        // And what is written reads back unchanged.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text = "<&>\"\\\t\u{2029}x\n";
        writer(&path, None, 1)
            .write(Stream::Stdout, text.as_bytes(), ts(T0, 0))
            .unwrap();
        let got = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(lines(&got), [text]);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_per_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = writer(&path, None, 1);
        // \xe2\x82 is a truncated 3-byte sequence: Go replaces each byte.
        w.write(Stream::Stdout, b"a\xffb\xe2\x82c\n", ts(T0, 0))
            .unwrap();
        let raw = fs::read_to_string(&path).unwrap();
        assert!(
            raw.starts_with("{\"log\":\"a\\ufffdb\\ufffd\\ufffdc\\n\""),
            "{raw}"
        );
        let got = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(lines(&got), ["a\u{FFFD}b\u{FFFD}\u{FFFD}c\n"]);
    }

    #[test]
    fn lines_split_across_chunks_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = writer(&path, None, 1);
        let t = ts(T0, 0);
        w.write(Stream::Stdout, b"hel", t).unwrap();
        w.write(Stream::Stderr, b"err", t).unwrap();
        w.write(Stream::Stdout, b"lo\nwor", t).unwrap();
        assert_eq!(read(&path, &ReadOptions::default()).unwrap().len(), 1);
        w.write(Stream::Stderr, b"or\n", t).unwrap();
        w.write(Stream::Stdout, b"ld\n\nlast", t).unwrap();
        let got = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(lines(&got), ["hello\n", "error\n", "world\n", "\n"]);
        let streams: Vec<Stream> = got.iter().map(|e| e.stream).collect();
        assert_eq!(
            streams,
            [
                Stream::Stdout,
                Stream::Stderr,
                Stream::Stdout,
                Stream::Stdout
            ]
        );
        // The unfinished "last" is written as it is at the stream's end.
        w.flush_partial(Stream::Stdout, t).unwrap();
        w.flush_partial(Stream::Stderr, t).unwrap();
        let got = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[4].line, b"last");
        // Nothing pending: nothing written.
        w.flush_partial(Stream::Stdout, t).unwrap();
        assert_eq!(read(&path, &ReadOptions::default()).unwrap().len(), 5);
    }

    #[test]
    fn long_lines_split_at_16k() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = writer(&path, None, 1);
        let t = ts(T0, 0);
        // A 16 KiB + 100 line arriving in pieces.
        let long = vec![b'x'; MAX_LINE + 100];
        for chunk in long.chunks(1000) {
            w.write(Stream::Stdout, chunk, t).unwrap();
        }
        w.write(Stream::Stdout, b"\n", t).unwrap();
        // Exactly 16 KiB before the newline: the newline is beyond Docker's buffer.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        w.write(Stream::Stdout, &exact, t).unwrap();
        let got = read(&path, &ReadOptions::default()).unwrap();
        let sizes: Vec<usize> = got.iter().map(|e| e.line.len()).collect();
        assert_eq!(sizes, [MAX_LINE, 101, MAX_LINE, 1]);
        assert!(got[0].line.iter().all(|&b| b == b'x'));
        assert_eq!(got[1].line.last(), Some(&b'\n'));
        assert_eq!(got[3].line, b"\n");
    }

    fn entry_len(line: &str) -> u64 {
        let mut buf = Vec::new();
        encode_entry(&mut buf, Stream::Stdout, line.as_bytes(), ts(T0, 0));
        buf.len() as u64
    }

    #[test]
    fn rotation_keeps_max_file_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        // Every entry has the same length; a full file holds exactly one.
        let mut w = writer(&path, Some(entry_len("line 0\n")), 3);
        for i in 0..5 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), ts(T0, 0))
                .unwrap();
        }
        let file_lines = |p: &Path| lines(&read_one(p));
        assert_eq!(file_lines(&path), ["line 4\n"]);
        assert_eq!(file_lines(&rotated_path(&path, 1)), ["line 3\n"]);
        assert_eq!(file_lines(&rotated_path(&path, 2)), ["line 2\n"]);
        assert!(!rotated_path(&path, 3).exists());
        let got = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(lines(&got), ["line 2\n", "line 3\n", "line 4\n"]);
        // A reopened writer knows the size and rotates on its next entry.
        drop(w);
        let mut w = writer(&path, Some(entry_len("line 0\n")), 3);
        w.write(Stream::Stdout, b"line 5\n", ts(T0, 0)).unwrap();
        let got = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(lines(&got), ["line 3\n", "line 4\n", "line 5\n"]);
    }

    /// The entries of one file only.
    fn read_one(path: &Path) -> Vec<LogEntry> {
        let seg = open_segment(path).unwrap().unwrap();
        let mut out = Vec::new();
        scan_forward(&seg.file, 0, seg.end, &mut Vec::new(), &mut |e| {
            out.push(e);
            Ok(false)
        })
        .unwrap();
        out
    }

    #[test]
    fn rotation_grows_past_max_size_by_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let one = entry_len("line 0\n");
        let mut w = writer(&path, Some(one + 1), 2);
        for i in 0..3 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), ts(T0, 0))
                .unwrap();
        }
        // Two entries fit before the size is reached, as with dockerd.
        assert_eq!(fs::metadata(&path).unwrap().len(), one);
        assert_eq!(fs::metadata(rotated_path(&path, 1)).unwrap().len(), 2 * one);
    }

    #[test]
    fn max_file_one_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = writer(&path, Some(entry_len("line 0\n")), 1);
        let ino = fs::metadata(&path).unwrap().ino();
        for i in 0..4 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), ts(T0, 0))
                .unwrap();
        }
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);
        assert!(!rotated_path(&path, 1).exists());
        let got = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(lines(&got), ["line 3\n"]);
    }

    /// Entries "0\n".."n-1\n", one second apart from T0, rotating every few entries.
    fn numbered_log(path: &Path, n: i64) {
        let mut w = writer(path, Some(entry_len("0000\n") * 4), 100);
        for i in 0..n {
            w.write(
                Stream::Stdout,
                format!("{i:04}\n").as_bytes(),
                ts(T0 + i, 0),
            )
            .unwrap();
        }
    }

    fn numbers(entries: &[LogEntry]) -> Vec<i64> {
        entries
            .iter()
            .map(|e| {
                std::str::from_utf8(&e.line)
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn read_orders_rotated_files_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        numbered_log(&path, 10);
        assert!(rotated_path(&path, 2).exists());
        let all = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(numbers(&all), (0..10).collect::<Vec<_>>());
        assert_eq!(all[3].time, ts(T0 + 3, 0));

        let opts = |tail, since: Option<i64>, until: Option<i64>| ReadOptions {
            tail,
            since: since.map(|s| ts(T0 + s, 0)),
            until: until.map(|u| ts(T0 + u, 0)),
        };
        let get = |o: ReadOptions| numbers(&read(&path, &o).unwrap());
        assert_eq!(get(opts(Some(3), None, None)), [7, 8, 9]);
        assert_eq!(get(opts(Some(6), None, None)), [4, 5, 6, 7, 8, 9]);
        assert_eq!(get(opts(Some(50), None, None)).len(), 10);
        assert_eq!(get(opts(Some(0), None, None)), Vec::<i64>::new());
        // since is inclusive, until is inclusive.
        assert_eq!(get(opts(None, Some(7), None)), [7, 8, 9]);
        assert_eq!(get(opts(None, None, Some(2))), [0, 1, 2]);
        assert_eq!(get(opts(None, Some(3), Some(5))), [3, 4, 5]);
        // Filters first, then the tail.
        assert_eq!(get(opts(Some(2), None, Some(5))), [4, 5]);
        assert_eq!(get(opts(Some(5), Some(6), None)), [6, 7, 8, 9]);
        // A missing log is empty.
        assert!(
            read(&dir.path().join("none"), &ReadOptions::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn tail_reads_backward_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = writer(&path, Some(300_000), 5);
        for i in 0..12_000 {
            let line = format!("{i:05} {}\n", "z".repeat(i % 97));
            w.write(Stream::Stderr, line.as_bytes(), ts(T0 + i as i64, 0))
                .unwrap();
        }
        assert!(rotated_path(&path, 2).exists());
        let all = read(&path, &ReadOptions::default()).unwrap();
        for n in [1, 2, 777, 5000, all.len(), all.len() + 1] {
            let tail = read(
                &path,
                &ReadOptions {
                    tail: Some(n),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(tail, all[all.len().saturating_sub(n)..], "tail {n}");
        }
    }

    #[test]
    fn torn_and_malformed_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        numbered_log(&path, 3);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"not json\n").unwrap();
        f.write_all(
            b"{\"log\":\"5\\n\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:05Z\"}\n",
        )
        .unwrap();
        f.write_all(b"{\"log\":\"torn").unwrap();
        let all = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(numbers(&all), [0, 1, 2, 5]);
        let tail = read(
            &path,
            &ReadOptions {
                tail: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(numbers(&tail), [2, 5]);
    }

    #[test]
    fn reads_dockerd_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(
            &path,
            "{\"log\":\"\\u003cb\\u003e \\u0026\\n\",\"stream\":\"stderr\",\"attrs\":{\"tag\":\"x\"},\"time\":\"2024-05-01T10:00:00.5Z\"}\n",
        )
        .unwrap();
        let got = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(
            got,
            [LogEntry {
                stream: Stream::Stderr,
                time: ts(T0, 500_000_000),
                line: b"<b> &\n".to_vec(),
            }]
        );
    }

    /// Runs `follow` on a thread; `done` tells it the producer is finished.
    fn spawn_follow(
        path: &Path,
        opts: ReadOptions,
    ) -> (Arc<AtomicBool>, thread::JoinHandle<Vec<LogEntry>>) {
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&done);
        let path = path.to_owned();
        let handle = thread::spawn(move || {
            let mut got = Vec::new();
            follow(
                &path,
                &opts,
                &mut |e| {
                    got.push(e.clone());
                    Ok(())
                },
                &mut || stop.load(Ordering::SeqCst),
            )
            .unwrap();
            got
        });
        (done, handle)
    }

    #[test]
    fn follow_sees_appends_and_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        numbered_log(&path, 10);
        let (done, handle) = spawn_follow(
            &path,
            ReadOptions {
                tail: Some(2),
                ..Default::default()
            },
        );
        thread::sleep(Duration::from_millis(120));
        // Reopened with the same settings: a rotation every 4 entries, in bursts (several
        // rotations between two polls) and slowly (each seen on its own).
        let mut w = writer(&path, Some(entry_len("0000\n") * 4), 100);
        for i in 10..200 {
            w.write(
                Stream::Stdout,
                format!("{i:04}\n").as_bytes(),
                ts(T0 + i, 0),
            )
            .unwrap();
            if i % 37 == 0 {
                thread::sleep(Duration::from_millis(70));
            }
        }
        done.store(true, Ordering::SeqCst);
        let got = handle.join().unwrap();
        assert_eq!(numbers(&got), (8..200).collect::<Vec<_>>());
    }

    #[test]
    fn follow_keeps_up_with_few_files_and_truncation() {
        for max_file in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log");
            // The log does not exist yet when following starts.
            let (done, handle) = spawn_follow(&path, ReadOptions::default());
            thread::sleep(Duration::from_millis(80));
            let mut w = writer(&path, Some(entry_len("0000\n")), max_file);
            for i in 0..6 {
                w.write(
                    Stream::Stdout,
                    format!("{i:04}\n").as_bytes(),
                    ts(T0 + i, 0),
                )
                .unwrap();
                thread::sleep(Duration::from_millis(200));
            }
            done.store(true, Ordering::SeqCst);
            let got = handle.join().unwrap();
            assert_eq!(
                numbers(&got),
                (0..6).collect::<Vec<_>>(),
                "max_file {max_file}"
            );
        }
    }

    #[test]
    fn follow_stops_past_until_and_on_emit_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        numbered_log(&path, 5);
        // An entry after `until` in the history ends following at once.
        let mut got = Vec::new();
        follow(
            &path,
            &ReadOptions {
                until: Some(ts(T0 + 2, 0)),
                ..Default::default()
            },
            &mut |e| {
                got.push(e.clone());
                Ok(())
            },
            &mut || false,
        )
        .unwrap();
        assert_eq!(numbers(&got), [0, 1, 2]);

        // A live entry after `until` does too.
        let (done, handle) = spawn_follow(
            &path,
            ReadOptions {
                tail: Some(0),
                until: Some(ts(T0 + 6, 0)),
                ..Default::default()
            },
        );
        thread::sleep(Duration::from_millis(80));
        let mut w = writer(&path, None, 1);
        for i in 5..9 {
            w.write(
                Stream::Stdout,
                format!("{i:04}\n").as_bytes(),
                ts(T0 + i, 0),
            )
            .unwrap();
        }
        let got = handle.join().unwrap();
        assert!(!done.load(Ordering::SeqCst));
        assert_eq!(numbers(&got), [5, 6]);

        // emit's error comes back as is.
        let err = follow(
            &path,
            &ReadOptions::default(),
            &mut |_| Err(io::Error::from(io::ErrorKind::BrokenPipe)),
            &mut || false,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn follow_waits_for_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (done, handle) = spawn_follow(&path, ReadOptions::default());
        let mut line = Vec::new();
        encode_entry(&mut line, Stream::Stdout, b"whole\n", ts(T0, 0));
        let mut f = open_append(&path).unwrap();
        f.write_all(&line[..20]).unwrap();
        thread::sleep(Duration::from_millis(150));
        f.write_all(&line[20..]).unwrap();
        thread::sleep(Duration::from_millis(100));
        done.store(true, Ordering::SeqCst);
        assert_eq!(lines(&handle.join().unwrap()), ["whole\n"]);
    }

    #[test]
    fn rfc3339_nano_trims_like_go() {
        assert_eq!(rfc3339_nano(ts(T0, 0)), "2024-05-01T10:00:00Z");
        assert_eq!(
            rfc3339_nano(ts(T0, 123_450_000)),
            "2024-05-01T10:00:00.12345Z"
        );
        assert_eq!(rfc3339_nano(ts(T0, 1)), "2024-05-01T10:00:00.000000001Z");
        assert_eq!(rfc3339_nano(ts(T0, 100_000_000)), "2024-05-01T10:00:00.1Z");
        assert_eq!(rfc3339_nano(ts(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(ts(-1, 500_000_000)), "1969-12-31T23:59:59.5Z");
    }

    #[test]
    fn log_config_from_opts() {
        let cfg = |opts: &[(&str, &str)]| LogConfig::from_opts(opts.iter().copied());
        assert_eq!(cfg(&[]).unwrap(), LogConfig::default());
        assert_eq!(LogConfig::default().max_file, 1);
        let size = |v: &str| cfg(&[("max-size", v)]).map(|c| c.max_size.unwrap());
        assert_eq!(size("10m").unwrap(), 10_000_000);
        assert_eq!(size("1k").unwrap(), 1000);
        assert_eq!(size("1g").unwrap(), 1_000_000_000);
        assert_eq!(size("1024").unwrap(), 1024);
        assert_eq!(size("1.5M").unwrap(), 1_500_000);
        assert_eq!(size("10MB").unwrap(), 10_000_000);
        assert_eq!(size("2 KiB").unwrap(), 2000);
        assert_eq!(size("7b").unwrap(), 7);
        assert_eq!(
            cfg(&[("max-size", "10m"), ("max-file", "3")]).unwrap(),
            LogConfig {
                max_size: Some(10_000_000),
                max_file: 3
            }
        );
        assert_eq!(
            cfg(&[("max-file", "5")]).unwrap(),
            LogConfig {
                max_size: None,
                max_file: 5
            }
        );
        // Errors, worded as Docker's.
        assert_eq!(
            cfg(&[("max-size", "1m"), ("labels", "a")]).unwrap_err(),
            "unknown log opt 'labels' for json-file log driver"
        );
        assert_eq!(size("0").unwrap_err(), "max-size must be a positive number");
        assert_eq!(size("abc").unwrap_err(), "invalid size: 'abc'");
        assert_eq!(size("-1m").unwrap_err(), "invalid size: '-1m'");
        assert_eq!(size("10x").unwrap_err(), "invalid suffix: 'x'");
        assert_eq!(size("10mx").unwrap_err(), "invalid suffix: 'mx'");
        assert_eq!(
            cfg(&[("max-file", "0")]).unwrap_err(),
            "max-file cannot be less than 1"
        );
        assert_eq!(
            cfg(&[("max-file", "x")]).unwrap_err(),
            "strconv.Atoi: parsing \"x\": invalid syntax"
        );
    }
}
