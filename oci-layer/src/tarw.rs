//! A small, reproducible tar writer: ustar headers, PAX records for long names, long link
//! targets, large ids and sizes, and xattrs (`SCHILY.xattr.*`). No user or group names, no
//! access times: the same tree always gives the same bytes.

use crate::error::{Error, Result};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
/// The entry types of [`EntryHeader::kind`] (astral-tokio-tar's).
pub use tokio_tar::EntryType;
use tokio_tar::Header;

/// One entry's header.
#[derive(Debug, Clone)]
pub struct EntryHeader {
    /// Path inside the archive (relative, `/`-separated; directories without a trailing `/`,
    /// which is added).
    pub path: Vec<u8>,
    /// Entry type.
    pub kind: EntryType,
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time (seconds).
    pub mtime: u64,
    /// Content size (regular files only).
    pub size: u64,
    /// Symlink target or hard link target path.
    pub link: Vec<u8>,
    /// Device major and minor.
    pub dev: (u32, u32),
    /// xattrs.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryHeader {
    /// A header with everything zero but the path and type.
    pub fn new(path: Vec<u8>, kind: EntryType) -> Self {
        Self {
            path,
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: Vec::new(),
            dev: (0, 0),
            xattrs: Vec::new(),
        }
    }
}

const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// A 12-byte numeric field: 11 octal digits when they hold it, else GNU base-256.
pub(crate) fn numeric(v: u64) -> [u8; 12] {
    let mut f = [0u8; 12];
    if v <= USTAR_MAX_SIZE {
        f.copy_from_slice(format!("{v:011o}\0").as_bytes());
    } else {
        f[0] = 0x80;
        f[4..].copy_from_slice(&v.to_be_bytes());
    }
    f
}

/// The data runs of the file `fd` of `size` bytes ((offset, length), in order), by
/// `SEEK_DATA`/`SEEK_HOLE`; `None` when it has no hole or the file system cannot say.
pub(crate) fn data_runs(fd: std::os::fd::BorrowedFd<'_>, size: u64) -> Option<Vec<(u64, u64)>> {
    let runs = find_runs(fd, size);
    // The file is read from its start next, whatever this found.
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(0)).ok()?;
    runs
}

fn find_runs(fd: std::os::fd::BorrowedFd<'_>, size: u64) -> Option<Vec<(u64, u64)>> {
    use rustix::fs::SeekFrom;
    let mut runs = Vec::new();
    let mut at = 0u64;
    while at < size {
        let start = match rustix::fs::seek(fd, SeekFrom::Data(at)) {
            Ok(s) => s,
            // No data after `at`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return None,
        };
        if start >= size {
            break;
        }
        let end = rustix::fs::seek(fd, SeekFrom::Hole(start)).ok()?.min(size);
        runs.push((start, end - start));
        at = end;
    }
    let stored: u64 = runs.iter().map(|r| r.1).sum();
    (stored < size).then_some(runs)
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body + 1;
    loop {
        let n = len.to_string().len() + body;
        if n == len {
            break;
        }
        len = n;
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Writes tar entries to `W`.
pub struct TarWriter<W> {
    w: W,
    written: u64,
    /// The copy buffer of file contents, kept across entries.
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> TarWriter<W> {
    /// A writer over `w`.
    pub fn new(w: W) -> Self {
        Self {
            w,
            written: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    async fn put(&mut self, data: &[u8]) -> Result<()> {
        self.w.write_all(data).await?;
        self.written += data.len() as u64;
        Ok(())
    }

    async fn pad(&mut self) -> Result<()> {
        let rem = (self.written % 512) as usize;
        if rem != 0 {
            self.put(&[0u8; 512][..512 - rem]).await?;
        }
        Ok(())
    }

    /// Writes a header (and its PAX header when needed).
    pub async fn header(&mut self, e: &EntryHeader) -> Result<()> {
        let mut path = e.path.clone();
        if e.kind == EntryType::Directory && !path.ends_with(b"/") {
            path.push(b'/');
        }
        let mut pax = Vec::new();
        if path.len() > 100 {
            pax_record(&mut pax, "path", &path);
        }
        if e.link.len() > 100 {
            pax_record(&mut pax, "linkpath", &e.link);
        }
        if e.uid > USTAR_MAX_ID {
            pax_record(&mut pax, "uid", e.uid.to_string().as_bytes());
        }
        if e.gid > USTAR_MAX_ID {
            pax_record(&mut pax, "gid", e.gid.to_string().as_bytes());
        }
        if e.size > USTAR_MAX_SIZE {
            pax_record(&mut pax, "size", e.size.to_string().as_bytes());
        }
        let mut xattrs = e.xattrs.clone();
        xattrs.sort();
        for (k, v) in &xattrs {
            if v.is_empty() {
                // An empty PAX value means "unset" (POSIX): an empty xattr cannot be carried.
                tracing::warn!(path = %String::from_utf8_lossy(&path), xattr = %k, "empty xattr value not representable in a tar; left out");
                continue;
            }
            pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
        }
        if !pax.is_empty() {
            let mut h = Header::new_ustar();
            let name = b"PaxHeader";
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(EntryType::XHeader);
            h.set_mode(0o644);
            h.set_size(pax.len() as u64);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            self.put(h.as_bytes()).await?;
            self.put(&pax).await?;
            self.pad().await?;
        }
        let mut h = Header::new_ustar();
        let n = path.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&path[..n]);
        let l = e.link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&e.link[..l]);
        h.set_entry_type(e.kind);
        h.set_mode(e.mode & 0o7777);
        h.set_uid(e.uid.min(USTAR_MAX_ID));
        h.set_gid(e.gid.min(USTAR_MAX_ID));
        h.set_mtime(e.mtime.min(USTAR_MAX_SIZE));
        h.set_size(if e.size > USTAR_MAX_SIZE { 0 } else { e.size });
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(e.dev.0)?;
            h.set_device_minor(e.dev.1)?;
        }
        h.set_cksum();
        self.put(h.as_bytes()).await
    }

    /// Writes a regular file: header, then exactly `e.size` bytes from `data`.
    pub async fn file(
        &mut self,
        e: &EntryHeader,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<()> {
        self.header(e).await?;
        let n = self.copy_from(data, e.size).await?;
        if n != e.size {
            return Err(Error::InvalidEntry {
                path: String::from_utf8_lossy(&e.path).into_owned(),
                reason: format!("file changed while being read: {n} of {} bytes", e.size),
            });
        }
        self.pad().await
    }

    /// Writes a sparse regular file as an old GNU sparse entry (`S`): only the bytes of
    /// `runs` ((offset, length), in order) are stored, the holes between them are described
    /// by the map. `e.size` is the file's whole length. Falls back to [`TarWriter::file`] (the
    /// holes as zeros) when the entry needs PAX records, which a GNU header cannot carry.
    pub async fn sparse_file(
        &mut self,
        e: &EntryHeader,
        runs: &[(u64, u64)],
        data: &mut tokio::fs::File,
    ) -> Result<()> {
        use tokio::io::AsyncSeekExt;
        let plain = e.path.len() <= 100
            && e.link.is_empty()
            && e.xattrs.is_empty()
            && e.uid <= USTAR_MAX_ID
            && e.gid <= USTAR_MAX_ID;
        if !plain {
            data.seek(std::io::SeekFrom::Start(0)).await?;
            return self.file(e, data).await;
        }
        // GNU tar's convention: a file that ends in a hole has a last run of length 0 there.
        let mut map: Vec<(u64, u64)> = runs.to_vec();
        if map.last().is_none_or(|&(o, l)| o + l < e.size) {
            map.push((e.size, 0));
        }
        let stored: u64 = runs.iter().map(|r| r.1).sum();
        let mut h = Header::new_gnu();
        let n = e.path.len();
        h.as_old_mut().name[..n].copy_from_slice(&e.path);
        h.set_entry_type(EntryType::GNUSparse);
        h.set_mode(e.mode & 0o7777);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime.min(USTAR_MAX_SIZE));
        h.set_size(stored);
        let mut block = *h.as_bytes();
        // The map: four runs in the header, 21 in each extension block after it.
        let (first, rest) = map.split_at(map.len().min(4));
        for (i, &(off, len)) in first.iter().enumerate() {
            block[386 + i * 24..398 + i * 24].copy_from_slice(&numeric(off));
            block[398 + i * 24..410 + i * 24].copy_from_slice(&numeric(len));
        }
        block[482] = u8::from(!rest.is_empty());
        block[483..495].copy_from_slice(&numeric(e.size));
        let sum = crate::sparse::checksum(&block);
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.put(&block).await?;
        let chunks: Vec<&[(u64, u64)]> = rest.chunks(21).collect();
        for (k, chunk) in chunks.iter().enumerate() {
            let mut ext = [0u8; 512];
            for (i, &(off, len)) in chunk.iter().enumerate() {
                ext[i * 24..i * 24 + 12].copy_from_slice(&numeric(off));
                ext[i * 24 + 12..i * 24 + 24].copy_from_slice(&numeric(len));
            }
            ext[504] = u8::from(k + 1 < chunks.len());
            self.put(&ext).await?;
        }
        for &(off, len) in runs {
            data.seek(std::io::SeekFrom::Start(off)).await?;
            if self.copy_from(data, len).await? != len {
                return Err(Error::InvalidEntry {
                    path: String::from_utf8_lossy(&e.path).into_owned(),
                    reason: "file changed while being read: it got shorter".into(),
                });
            }
        }
        self.pad().await
    }

    /// Copies up to `len` bytes of `data` into the archive; how many there were. Reads of up
    /// to 256 KiB (tokio::io::copy's 8 KiB would make each a hop to the blocking pool for a
    /// file) into one buffer for the whole archive.
    async fn copy_from(
        &mut self,
        data: &mut (dyn AsyncRead + Send + Unpin),
        len: u64,
    ) -> Result<u64> {
        use tokio::io::AsyncReadExt;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(256 * 1024, 0);
        let mut n = 0u64;
        let result = async {
            while n < len {
                let want = (buf.len() as u64).min(len - n) as usize;
                let got = data.read(&mut buf[..want]).await?;
                if got == 0 {
                    break;
                }
                self.w.write_all(&buf[..got]).await?;
                n += got as u64;
            }
            Ok::<_, std::io::Error>(())
        }
        .await;
        self.buf = buf;
        self.written += n;
        result?;
        Ok(n)
    }

    /// Writes the end-of-archive blocks and flushes; returns the inner writer.
    pub async fn finish(mut self) -> Result<W> {
        self.put(&[0u8; 1024]).await?;
        self.w.flush().await?;
        Ok(self.w)
    }
}
