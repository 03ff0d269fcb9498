//! Tar building (including hostile entries tar libraries refuse to write) and tree snapshots.

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use tokio_tar::{EntryType, Header};

/// One entry to put in a test tar.
#[derive(Clone, Debug)]
pub struct E {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub pax: Vec<(String, Vec<u8>)>,
    pub dev: (u32, u32),
}

impl E {
    pub fn file(name: &str, data: &[u8]) -> Self {
        Self {
            name: name.as_bytes().to_vec(),
            kind: EntryType::Regular,
            data: data.to_vec(),
            link: Vec::new(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            pax: Vec::new(),
            dev: (0, 0),
        }
    }
    pub fn dir(name: &str) -> Self {
        Self {
            kind: EntryType::Directory,
            mode: 0o755,
            ..Self::file(name, b"")
        }
    }
    pub fn symlink(name: &str, target: &str) -> Self {
        Self {
            kind: EntryType::Symlink,
            link: target.as_bytes().to_vec(),
            mode: 0o777,
            ..Self::file(name, b"")
        }
    }
    pub fn hardlink(name: &str, target: &str) -> Self {
        Self {
            kind: EntryType::Link,
            link: target.as_bytes().to_vec(),
            ..Self::file(name, b"")
        }
    }
    pub fn node(name: &str, kind: EntryType, major: u32, minor: u32) -> Self {
        Self {
            kind,
            dev: (major, minor),
            mode: 0o666,
            ..Self::file(name, b"")
        }
    }
    pub fn mode(mut self, m: u32) -> Self {
        self.mode = m;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, t: u64) -> Self {
        self.mtime = t;
        self
    }
    pub fn pax(mut self, k: &str, v: &[u8]) -> Self {
        self.pax.push((k.to_owned(), v.to_vec()));
        self
    }
}

fn pax_record(k: &str, v: &[u8]) -> Vec<u8> {
    // "LEN key=value\n" where LEN counts itself.
    let body_len = 1 + k.len() + 1 + v.len() + 1;
    let mut len = body_len + 1;
    while format!("{len}").len() + body_len != len {
        len = format!("{len}").len() + body_len;
    }
    let mut out = format!("{len} {k}=").into_bytes();
    out.extend_from_slice(v);
    out.push(b'\n');
    out
}

fn block_pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// A tar of `entries`, written byte by byte (names are not checked: hostile tars are the
/// point). Long names and xattrs go in PAX headers.
pub fn tar(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut pax = e.pax.clone();
        if e.name.len() > 100 {
            pax.push(("path".into(), e.name.clone()));
        }
        if e.link.len() > 100 {
            pax.push(("linkpath".into(), e.link.clone()));
        }
        if !pax.is_empty() {
            let mut body = Vec::new();
            for (k, v) in &pax {
                body.extend(pax_record(k, v));
            }
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend(body);
            block_pad(&mut out);
        }
        let mut h = Header::new_ustar();
        let n = e.name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&e.name[..n]);
        let l = e.link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&e.link[..l]);
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&e.data);
        block_pad(&mut out);
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// gzip of bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// What a path looks like, for before/after comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub mtime: i64,
    pub content: Vec<u8>,
}

/// Every path under `dir` (not following symlinks) with mode, owner, links, mtime and
/// content (symlink target for symlinks).
pub fn snapshot(dir: &Path) -> BTreeMap<String, Snap> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<String, Snap>) {
        let md = std::fs::symlink_metadata(p).unwrap();
        let content = if md.file_type().is_symlink() {
            std::fs::read_link(p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if md.is_file() {
            std::fs::read(p).unwrap()
        } else {
            Vec::new()
        };
        let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
        out.insert(
            rel,
            Snap {
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                nlink: if md.is_dir() { 0 } else { md.nlink() },
                mtime: md.mtime(),
                content,
            },
        );
        if md.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for n in names {
                walk(base, &n, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
