//! Running code inside another network namespace.
//!
//! `setns(CLONE_NEWNET)` moves only the calling *thread*, and a thread that moved cannot be
//! trusted to move back (the namespace it came from may be gone; the caller may be a tokio
//! worker that other tasks run on next). So the work runs on a fresh thread that enters the
//! namespace first and ends when the work is done: the caller's thread never changes
//! namespace, whatever fails.

use std::os::fd::BorrowedFd;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::NetError;

/// Runs `work` on a dedicated thread that has entered the network namespace `netns` (an fd
/// of `/proc/<pid>/ns/net` or of a bind mount of one), and returns its result. Sockets that
/// `work` opens belong to that namespace for their whole life.
pub(crate) fn run_in<T: Send>(
    netns: BorrowedFd<'_>,
    work: impl FnOnce() -> Result<T, NetError> + Send,
) -> Result<T, NetError> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("berth-netns".to_owned())
            .spawn_scoped(scope, move || {
                move_into_link_name_space(netns, Some(LinkNameSpaceType::Network)).map_err(
                    |e| NetError::Io {
                        op: "entering the container's network namespace".to_owned(),
                        source: e.into(),
                    },
                )?;
                work()
            })
            .map_err(|source| NetError::Io {
                op: "starting a thread for the container's network namespace".to_owned(),
                source,
            })?;
        // A panic in `work` is a bug: carry it to the caller as a panic, not an error.
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
