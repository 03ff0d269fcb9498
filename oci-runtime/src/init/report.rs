//! The parent's ends of the two pipes to a child: the go it waits for (and the state for
//! its createContainer hooks), and the report it makes of the step that failed, or that it is
//! ready.

use super::*;
use crate::error::{Error, Result};

/// The child's ends, which go into its [`Plan`]: the host's `/proc` (opened before any
/// pivot), the read end of the go pipe and the write end of the report pipe.
pub(crate) struct ChildEnds {
    pub proc: OwnedFd,
    pub sync_read: OwnedFd,
    pub report: OwnedFd,
}

/// The parent's ends: the go pipe's write end and the report pipe's read end.
pub(crate) struct ParentEnds {
    pub sync_write: OwnedFd,
    pub report_read: OwnedFd,
}

/// The descriptors a child is started with, and the parent's other ends.
pub(crate) fn channels() -> Result<(ChildEnds, ParentEnds)> {
    let proc = rustix::fs::open(
        "/proc",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", "/proc", e))?;
    let (sync_read, sync_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("pipe", "sync", e))?;
    let (report_read, report) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("pipe", "report", e))?;
    Ok((
        ChildEnds {
            proc,
            sync_read,
            report,
        },
        ParentEnds {
            sync_write,
            report_read,
        },
    ))
}

/// After the parent failed to give the child its go (writing its id maps or the go byte):
/// the child's own report when it had failed first (a cgroup it could not join makes the
/// go write fail with EPIPE, which would hide why), else the parent's error. Closing
/// `sync_write` first makes a child that still waits give up, so this never blocks.
pub(crate) fn child_failure_or(
    parent_error: Error,
    sync_write: OwnedFd,
    report: std::os::fd::BorrowedFd<'_>,
) -> Error {
    drop(sync_write);
    match read_report(report, &[], &[], &[]) {
        Err(Error::Init { step, source })
            if step != Step::name(Step::Sync as u32) && step != "setup" =>
        {
            Error::Init { step, source }
        }
        _ => parent_error,
    }
}

/// Reads the child's report: Ok when it is ready; otherwise the step that failed, named with
/// the mount (`names`), device or createContainer hook (`hooks`) it was working on.
pub(crate) fn read_report(
    fd: std::os::fd::BorrowedFd<'_>,
    names: &[String],
    devices: &[String],
    hooks: &[String],
) -> Result<()> {
    let mut rec = [0u8; 12];
    let mut got = 0;
    while got < 12 {
        match rustix::io::read(fd, &mut rec[got..]) {
            Ok(0) => {
                return Err(Error::Init {
                    step: "setup".into(),
                    source: std::io::Error::other("the container init exited without a report"),
                })
            }
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("read", "report pipe", e)),
        }
    }
    let step = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
    let errno = i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]);
    let index = u32::from_ne_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
    if step == Step::Ready as u32 {
        return Ok(());
    }
    if step == Step::Hook as u32 {
        let path = hooks.get(index).cloned().unwrap_or_default();
        return Err(Error::Hook {
            kind: "createContainer",
            path: path.into(),
            reason: if errno < 0 {
                format!("exited with {}", -errno)
            } else if errno == libc::ETIMEDOUT {
                "timed out".into()
            } else {
                std::io::Error::from_raw_os_error(errno).to_string()
            },
        });
    }
    let mut what = Step::name(step).to_owned();
    let which = if step == Step::Device as u32 {
        devices.get(index)
    } else {
        names.get(index)
    };
    if let Some(n) = which {
        what = format!("{what} ({n})");
    }
    Err(Error::Init {
        step: what,
        source: std::io::Error::from_raw_os_error(errno),
    })
}
