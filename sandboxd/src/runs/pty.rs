//! Pseudo-terminals for runs that need one (`top`, `python -i`, an interactive shell).
//!
//! The pair is opened as the sandbox user (the thread's fsuid), so devpts makes the user the
//! owner of `/dev/pts/N`; the child gets the terminal as stdin, stdout and stderr and makes it its
//! controlling terminal after `setsid` (see [`controlling_terminal`]). sandboxd keeps the master,
//! non-blocking, read and written through tokio's reactor (never the blocking pool: a run must
//! work while the pids limit is full).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, ReadBuf};

use crate::error::{Error, Result};

/// The master side of a run's terminal.
#[derive(Debug)]
pub struct Pty {
    master: AsyncFd<OwnedFd>,
}

/// A terminal size, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Rows (1..=1000).
    pub rows: u16,
    /// Columns (1..=1000).
    pub cols: u16,
}

impl Size {
    /// A size from the protocol's fields; 0 takes the classic 24×80.
    pub fn new(rows: u32, cols: u32) -> Result<Self> {
        let pick = |v: u32, default: u16, what: &str| -> Result<u16> {
            match v {
                0 => Ok(default),
                1..=1000 => Ok(v as u16),
                _ => Err(Error::invalid(format!(
                    "terminal {what} {v} is out of range; use 1 to 1000"
                ))),
            }
        };
        Ok(Self {
            rows: pick(rows, 24, "rows")?,
            cols: pick(cols, 80, "cols")?,
        })
    }

    fn winsize(self) -> libc::winsize {
        libc::winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

fn os_error(what: &str) -> Error {
    Error::Internal(format!(
        "cannot open a terminal ({what}): {}",
        std::io::Error::last_os_error()
    ))
}

impl Pty {
    /// Opens a terminal pair of `size`; returns the master and the slave (for the child).
    pub fn open(size: Size) -> Result<(Arc<Self>, OwnedFd)> {
        let opened = crate::privileges::as_user(|| -> Result<(OwnedFd, OwnedFd)> {
            // SAFETY: posix_openpt returns a new fd or -1; we own it from here.
            let master =
                unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
            if master < 0 {
                return Err(os_error("posix_openpt"));
            }
            // SAFETY: master is a fresh fd nobody else owns.
            let master = unsafe { OwnedFd::from_raw_fd(master) };
            // SAFETY: unlockpt only unlocks the slave of this master.
            if unsafe { libc::unlockpt(master.as_raw_fd()) } != 0 {
                return Err(os_error("unlockpt"));
            }
            let mut name = [0 as libc::c_char; 128];
            // SAFETY: ptsname_r writes at most name.len() bytes, NUL-terminated, into name.
            if unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) } != 0 {
                return Err(os_error("ptsname_r"));
            }
            // SAFETY: name is NUL-terminated (ptsname_r succeeded); open returns a fresh fd or -1.
            let slave = unsafe {
                libc::open(
                    name.as_ptr(),
                    libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
                )
            };
            if slave < 0 {
                return Err(os_error("opening the slave"));
            }
            // SAFETY: slave is a fresh fd nobody else owns.
            Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
        })?;
        let (master, slave) = opened?;
        set_size(&master, size)?;
        // SAFETY: fcntl on an fd we own; only its status flags change.
        unsafe {
            let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: an OwnedFd is open until dropped and always returns the same fd; the AsyncFd
        // owns it from here.
        let master = unsafe { AsyncFd::register(master) }
            .map_err(|e| Error::Internal(format!("cannot watch a terminal: {e}")))?;
        Ok((Arc::new(Self { master }), slave))
    }

    /// Changes the window size; the terminal's foreground programs get SIGWINCH.
    pub fn resize(&self, size: Size) -> Result<()> {
        set_size(self.master.get_ref(), size)
    }

    /// Writes all of `data` to the terminal (what a person types).
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| {
                // SAFETY: write reads at most data.len() bytes from data.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// What the terminal's programs write, as an `AsyncRead` that ends when the last of them
    /// closed the terminal.
    pub fn reader(self: &Arc<Self>) -> Reader {
        Reader(self.clone())
    }
}

fn set_size(fd: &OwnedFd, size: Size) -> Result<()> {
    let ws = size.winsize();
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer we pass.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(os_error("TIOCSWINSZ"));
    }
    Ok(())
}

/// The read side of a [`Pty`].
#[derive(Debug)]
pub struct Reader(Arc<Pty>);

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.master.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let read = guard.try_io(|fd| {
                // SAFETY: read writes at most unfilled.len() bytes into unfilled.
                let n = unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: every holder of the slave closed it; that is the end of the output.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Makes the child's stdin (the terminal) its controlling terminal; call in `pre_exec` after
/// `setsid`. Async-signal-safe: one ioctl.
pub fn controlling_terminal() -> std::io::Result<()> {
    // SAFETY: TIOCSCTTY on fd 0 with argument 0 (never steal a terminal from another session).
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_are_bounded() {
        assert_eq!(Size::new(0, 0).ok(), Some(Size { rows: 24, cols: 80 }));
        assert_eq!(
            Size::new(50, 132).ok(),
            Some(Size {
                rows: 50,
                cols: 132
            })
        );
        assert!(Size::new(1001, 80).is_err());
    }
}
