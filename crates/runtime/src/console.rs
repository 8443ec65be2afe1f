//! Pseudo-terminals for `-t`: the container gets the slave as its stdio and controlling
//! terminal; berth copies between the user's terminal and the master.

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
};

use rustix::{
    fs::{Mode, OFlags},
    pty::OpenptFlags,
    termios::{OptionalActions, Termios, Winsize},
};

/// A new pty pair.
#[derive(Debug)]
pub struct Pty {
    /// The side berth reads and writes.
    pub master: OwnedFd,
    /// The container's stdio.
    pub slave: OwnedFd,
    /// The slave's path on the host (`/dev/pts/N`), bound at the container's `/dev/console`.
    pub slave_path: PathBuf,
}

/// Opens a pty pair.
pub fn open_pty() -> io::Result<Pty> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave_path = PathBuf::from(name.to_string_lossy().into_owned());
    let slave = rustix::fs::open(&slave_path, OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(Pty {
        master,
        slave,
        slave_path,
    })
}

/// The window size of the terminal at `fd`, if it is one.
pub fn window_size(fd: impl AsFd) -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(fd).ok().map(|w| (w.ws_row, w.ws_col))
}

/// Sets the window size of the pty at `fd` (the master).
pub fn set_window_size(fd: impl AsFd, rows: u16, cols: u16) -> io::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

/// The user's terminal in raw mode until this is dropped.
pub struct RawMode<Fd: AsFd> {
    fd: Fd,
    saved: Termios,
}

impl<Fd: AsFd> RawMode<Fd> {
    /// Puts the terminal at `fd` in raw mode.
    pub fn enable(fd: Fd) -> io::Result<RawMode<Fd>> {
        let saved = rustix::termios::tcgetattr(&fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&fd, OptionalActions::Now, &raw)?;
        Ok(RawMode { fd, saved })
    }
}

impl<Fd: AsFd> Drop for RawMode<Fd> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(&self.fd, OptionalActions::Now, &self.saved);
    }
}
