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
pub(crate) struct Pty {
    /// The side berth reads and writes.
    pub master: OwnedFd,
    /// The container's stdio.
    pub slave: OwnedFd,
    /// The slave's path (`/dev/pts/N` of the devpts it came from).
    pub slave_path: PathBuf,
}

/// Opens a pty pair on the devpts of the calling process's `/dev/ptmx`: init calls it inside
/// the container, so the process sees `/dev/pts/0` as Docker's containers do.
pub(crate) fn open_pty() -> io::Result<Pty> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave_path = PathBuf::from(name.to_string_lossy().into_owned());
    let slave = rustix::fs::open(
        &slave_path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Pty {
        master,
        slave,
        slave_path,
    })
}

/// Sends `fd` over the unix socket `sock` (with one byte of data to carry it).
pub(crate) fn send_fd(sock: impl AsFd, fd: impl AsFd) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let fds = [fd.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        sock,
        &[io::IoSlice::new(b"c")],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

/// Receives the fd [`send_fd`] sent.
pub(crate) fn recv_fd(sock: impl AsFd) -> io::Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let got = rustix::net::recvmsg(
        &sock,
        &mut [io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if got.bytes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "init exited before sending the console",
        ));
    }
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(io::Error::other("no console fd received from init"))
}

/// The window size of the terminal at `fd`, if it is one.
pub fn window_size(fd: impl AsFd) -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(fd)
        .ok()
        .map(|w| (w.ws_row, w.ws_col))
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
