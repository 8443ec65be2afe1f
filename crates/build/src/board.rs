//! `--progress tty`: BuildKit's live view on a terminal. Every step is a row
//! (`=> [stage 2/5] RUN ...  3.1s`, `=> CACHED [...]`), a running step shows the last lines
//! of its output under it, and a thread repaints the whole view in place a few times a
//! second; when the build ends the final view stays on the screen.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock;
use std::time::{Duration, Instant};

/// Output lines a running step shows under its row.
const LOG_LINES: usize = 6;
/// How often the view is repainted.
const REPAINT: Duration = Duration::from_millis(120);

#[derive(Clone, Copy, PartialEq)]
enum State {
    Running,
    Done(Duration),
    Cached,
    Failed(Duration),
}

struct Row {
    step: usize,
    name: String,
    started: Instant,
    state: State,
    logs: VecDeque<String>,
}

struct View {
    rows: Vec<Row>,
    started: Instant,
    /// Lines painted last time, to move back over.
    painted: usize,
    finished: bool,
}

/// The live view, shared by the build's progress handles and the repainting thread.
pub(crate) struct Board {
    view: Mutex<View>,
    stop: AtomicBool,
}

impl Board {
    /// Starts the view and its repainting thread.
    pub(crate) fn start() -> Arc<Board> {
        let board = Arc::new(Board {
            view: Mutex::new(View {
                rows: Vec::new(),
                started: Instant::now(),
                painted: 0,
                finished: false,
            }),
            stop: AtomicBool::new(false),
        });
        let painter = board.clone();
        let _ = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while !painter.stop.load(Ordering::Relaxed) {
                    painter.paint(false);
                    std::thread::sleep(REPAINT);
                }
            });
        board
    }

    fn with_row(&self, step: usize, f: impl FnOnce(&mut Row)) {
        let mut view = lock(&self.view);
        if let Some(row) = view.rows.iter_mut().rev().find(|r| r.step == step) {
            f(row);
        }
    }

    pub(crate) fn start_step(&self, step: usize, name: &str) {
        lock(&self.view).rows.push(Row {
            step,
            name: name.to_string(),
            started: Instant::now(),
            state: State::Running,
            logs: VecDeque::new(),
        });
    }

    pub(crate) fn cached(&self, step: usize) {
        self.with_row(step, |r| r.state = State::Cached);
    }

    pub(crate) fn done(&self, step: usize) {
        self.with_row(step, |r| r.state = State::Done(r.started.elapsed()));
    }

    pub(crate) fn failed(&self, step: usize, message: &str) {
        self.with_row(step, |r| {
            r.state = State::Failed(r.started.elapsed());
            r.logs.push_back(format!("ERROR: {message}"));
        });
    }

    pub(crate) fn log(&self, step: usize, line: &str) {
        self.with_row(step, |r| {
            if r.logs.len() == LOG_LINES {
                r.logs.pop_front();
            }
            r.logs.push_back(line.to_string());
        });
    }

    /// Stops repainting and leaves the final view.
    pub(crate) fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        lock(&self.view).finished = true;
        self.paint(true);
    }

    /// Repaints the view; the painter's last tick after [`Board::finish`] paints nothing,
    /// so that it cannot move the cursor over what is written after the build.
    fn paint(&self, last: bool) {
        let mut view = lock(&self.view);
        if view.finished && !last {
            return;
        }
        let width = terminal_width();
        let fit = |s: String| -> String {
            if s.chars().count() <= width {
                s
            } else {
                s.chars().take(width.saturating_sub(1)).collect()
            }
        };
        let done = view
            .rows
            .iter()
            .filter(|r| r.state != State::Running)
            .count();
        let mut lines = vec![fit(format!(
            "[+] Building {:.1}s ({done}/{}){}",
            view.started.elapsed().as_secs_f64(),
            view.rows.len(),
            if view.finished { " FINISHED" } else { "" }
        ))];
        for row in &view.rows {
            let (prefix, took) = match row.state {
                State::Running => ("", row.started.elapsed()),
                State::Done(d) => ("", d),
                State::Cached => ("CACHED ", Duration::ZERO),
                State::Failed(d) => ("ERROR ", d),
            };
            let right = format!("{:.1}s", took.as_secs_f64());
            // The name is cut to keep the time in its column.
            let room = width.saturating_sub(right.len() + 2);
            let mut left: String = format!(" => {prefix}{}", row.name)
                .chars()
                .take(room)
                .collect();
            let pad = room.saturating_sub(left.chars().count());
            left.push_str(&" ".repeat(pad));
            lines.push(fit(format!("{left} {right}")));
            if matches!(row.state, State::Running | State::Failed(_)) {
                for log in &row.logs {
                    lines.push(fit(format!(" => => # {log}")));
                }
            }
        }
        // While it runs, the view fits the terminal (the cursor cannot go back over lines
        // that scrolled off): the header and the latest rows. The final view is whole.
        let height = terminal_height();
        if !view.finished && lines.len() >= height {
            let keep = height.saturating_sub(2).max(1);
            let tail = lines.split_off(lines.len() - keep);
            lines.truncate(1);
            lines.extend(tail);
        }
        let mut out = std::io::stderr().lock();
        let mut text = String::new();
        if view.painted > 0 {
            // Back to the first line painted last time, and clear from there.
            text.push_str(&format!("\x1b[{}F\x1b[J", view.painted));
        }
        for line in &lines {
            text.push_str(line);
            text.push('\n');
        }
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        view.painted = lines.len();
    }
}

fn terminal_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .map(|w| w.ws_col as usize)
        .ok()
        .filter(|w| *w >= 20)
        .unwrap_or(80)
}

fn terminal_height() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .map(|w| w.ws_row as usize)
        .ok()
        .filter(|h| *h >= 4)
        .unwrap_or(24)
}
