//! The module of [`OutputFile`], whose docs say what it is for (the module is private).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Output files that are replaced atomically when they are files, and streamed to when they
/// are anything else.
///
/// Writing a temporary file beside the target and renaming it into place is right for a
/// regular file (readers never see half an archive), and wrong for everything else: renamed
/// over `/dev/stdout` it replaces the host's device link with a file, over a FIFO it removes
/// the FIFO its reader waits on. [`OutputFile::create`] decides by what the path names now,
/// following symbolic links as an `open` would.
///
/// An output being written: [`file`](Self::file) is where the bytes go, and
/// [`commit`](Self::commit) makes them visible under the path (a no-op for streams). Dropped
/// without a commit, a temporary file is removed and the path is untouched.
#[derive(Debug)]
pub struct OutputFile {
    file: Option<std::fs::File>,
    temp: Option<(tempfile::TempPath, PathBuf)>,
}

impl OutputFile {
    /// Opens `path` for writing: a new path or a regular file (also through symbolic links)
    /// gets a private temporary file in the same directory, renamed over it on commit; a
    /// character device, pipe, FIFO or socket is opened and written to directly.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if Self::streams_to(path) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            return Ok(Self {
                file: Some(file),
                temp: None,
            });
        }
        if path.is_dir() {
            return Err(Error::io(
                path,
                std::io::Error::from(std::io::ErrorKind::IsADirectory),
            ));
        }
        // A link to a regular file: replace the file it names, not the link.
        let target = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?
            }
            _ => path.to_path_buf(),
        };
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".oci-output-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let (file, temp) = tmp.into_parts();
        Ok(Self {
            file: Some(file),
            temp: Some((temp, target)),
        })
    }

    /// Whether [`create`](Self::create) would write to `path` directly: it names (through
    /// links) something that is neither a regular file nor a directory.
    pub fn streams_to(path: impl AsRef<Path>) -> bool {
        std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
    }

    /// Whether the output is streamed (no rename on commit).
    pub fn is_stream(&self) -> bool {
        self.temp.is_none()
    }

    /// The file to write to (taken once; later calls give `None`).
    pub fn file(&mut self) -> Option<std::fs::File> {
        self.file.take()
    }

    /// Makes the output visible: the temporary file gets mode 0644 and is renamed over the
    /// path. Call after the bytes are flushed.
    pub fn commit(mut self) -> Result<()> {
        if let Some((temp, path)) = self.temp.take() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io(&*temp, e))?;
            temp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn regular_files_are_replaced_only_on_commit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.tar");
        std::fs::write(&p, b"old").unwrap();
        let mut o = OutputFile::create(&p).unwrap();
        assert!(!o.is_stream());
        o.file().unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        o.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        // Not committed: nothing changes, nothing is left behind.
        let mut o = OutputFile::create(&p).unwrap();
        o.file().unwrap().write_all(b"partial").unwrap();
        drop(o);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_link_to_a_file_keeps_the_link() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::write(&real, b"old").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut o = OutputFile::create(&link).unwrap();
        o.file().unwrap().write_all(b"new").unwrap();
        o.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn fifos_and_devices_are_streamed_to_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let mut o = OutputFile::create(&fifo).unwrap();
        assert!(o.is_stream());
        o.file().unwrap().write_all(b"through the fifo").unwrap();
        o.commit().unwrap();
        assert_eq!(reader.join().unwrap(), b"through the fifo");
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        let mut null = OutputFile::create("/dev/null").unwrap();
        assert!(null.is_stream());
        null.file().unwrap().write_all(b"x").unwrap();
        null.commit().unwrap();
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
    }
}
