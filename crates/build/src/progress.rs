//! What a build tells the person watching it, in the shape of BuildKit's plain progress:
//! numbered steps (`#5 [2/4] RUN pip install numpy`), the command's output prefixed with its
//! step, `#5 CACHED` or `#5 DONE 1.2s`, and the last lines of output kept for the error.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::board::Board;

/// How much of a failing step's output the error repeats.
const TAIL_LINES: usize = 10;

/// Where progress goes (stderr, or nowhere for `-q`).
pub struct Progress {
    out: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
    /// `--progress tty`: the live view instead of lines.
    board: Option<Arc<Board>>,
    /// The last step number given out, shared by the forks.
    steps: Arc<AtomicUsize>,
    step: usize,
    /// The current step's name.
    current: String,
    /// The first step that failed, shared by the forks.
    failed: Arc<Mutex<Option<String>>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Progress {
    /// Progress written to `out`; `None` prints nothing (`-q`).
    pub fn new(out: Option<Box<dyn Write + Send>>) -> Progress {
        Progress {
            out: out.map(|o| Arc::new(Mutex::new(o))),
            board: None,
            steps: Arc::default(),
            step: 0,
            current: String::new(),
            failed: Arc::default(),
            tail: Arc::default(),
        }
    }

    /// Progress as a live view repainted on the terminal (stderr); call
    /// [`Progress::finish`] when the build is over.
    pub fn tty() -> Progress {
        Progress {
            out: None,
            board: Some(Board::start()),
            steps: Arc::default(),
            step: 0,
            current: String::new(),
            failed: Arc::default(),
            tail: Arc::default(),
        }
    }

    /// The build is over: a live view paints its final state and stops.
    pub fn finish(&self) {
        if let Some(board) = &self.board {
            board.finish();
        }
    }

    /// Progress for a stage built concurrently with others: the same output and step
    /// numbers, its own current step and output tail.
    pub fn fork(&self) -> Progress {
        Progress {
            out: self.out.clone(),
            board: self.board.clone(),
            steps: self.steps.clone(),
            step: 0,
            current: String::new(),
            failed: self.failed.clone(),
            tail: Arc::default(),
        }
    }

    fn line(&mut self, text: &str) {
        if let Some(out) = &self.out {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    /// A new step starts: `#N text`.
    pub fn start(&mut self, text: &str) {
        self.step = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        self.tail.lock().expect("lock").clear();
        self.current = text.to_string();
        if let Some(board) = &self.board {
            return board.start_step(self.step, text);
        }
        let line = format!("#{} {text}", self.step);
        self.line(&line);
    }

    /// The step's result came from the cache.
    pub fn cached(&mut self) {
        if let Some(board) = &self.board {
            return board.cached(self.step);
        }
        let line = format!("#{} CACHED", self.step);
        self.line(&line);
    }

    /// A line about the current step (`#N text`).
    pub fn note(&mut self, text: &str) {
        if let Some(board) = &self.board {
            return board.log(self.step, text);
        }
        let line = format!("#{} {text}", self.step);
        self.line(&line);
    }

    /// The step is done.
    pub fn done(&mut self, took: Duration) {
        if let Some(board) = &self.board {
            return board.done(self.step);
        }
        let line = format!("#{} DONE {:.1}s", self.step, took.as_secs_f64());
        self.line(&line);
    }

    /// The step failed.
    pub fn failed(&mut self, message: &str) {
        self.failed
            .lock()
            .expect("lock")
            .get_or_insert_with(|| self.current.clone());
        if let Some(board) = &self.board {
            return board.failed(self.step, message);
        }
        let line = format!("#{} ERROR: {message}", self.step);
        self.line(&line);
    }

    /// The name of the first step that failed (`[stage-0 3/4] RUN ...`), for the report.
    pub fn failed_step(&self) -> Option<String> {
        self.failed.lock().expect("lock").clone()
    }

    /// The last lines the current step's command printed.
    pub fn tail(&self) -> Vec<String> {
        self.tail.lock().expect("lock").iter().cloned().collect()
    }

    /// A writer for the current step's command output: each line goes out as `#N line`
    /// and into the tail.
    pub fn output(&self) -> Box<dyn Write + Send> {
        Box::new(StepOutput {
            prefix: format!("#{} ", self.step),
            step: self.step,
            board: self.board.clone(),
            out: self.out.clone(),
            partial: Vec::new(),
            tail: self.tail.clone(),
        })
    }
}

struct StepOutput {
    prefix: String,
    step: usize,
    board: Option<Arc<Board>>,
    out: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
    partial: Vec<u8>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl StepOutput {
    fn emit(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        if let Some(board) = &self.board {
            board.log(self.step, &text);
        } else if let Some(out) = &self.out {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "{}{text}", self.prefix);
            let _ = out.flush();
        }
        let mut tail = self.tail.lock().expect("lock");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}

impl Write for StepOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StepOutput {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line);
        }
    }
}
