//! What `COPY` and `ADD` read: the build context (filtered by `.dockerignore`) or another
//! stage's filesystem, turned into tar entries for the destination, digested for the cache,
//! and streamed into the step's root filesystem through oci-rs-layer's hardened apply.
//!
//! What a source names is what BuildKit's copy finds (`FollowSymlinks`): a symlink in any
//! component of it, the last one too, is followed, but inside its tree (an absolute target
//! starts again at the tree's root, a `..` stops there), so a link never leads to a host
//! file; a `..` in the source that climbs above the tree is refused, and symlinks met while
//! copying a directory are copied as links. Files of one source that are hard links of each
//! other are written as one file and hard links to it. Writing into the root filesystem
//! goes through `oci_rs_layer::apply_tar`, which resolves every destination inside the
//! rootfs, so an image whose `/app` is a symlink to `/etc` cannot make a `COPY` write on
//! the host. `COPY --exclude` leaves out what its patterns match, `COPY --parents` keeps
//! each source's path under the destination ([`Select`]).

use super::error::{bail, BuildError, Context, Result};
use super::ignore::{clean_components, component_match, has_glob, Ignore, Matches};
use oci_rs_layer::Root;
use oci_rs_layer::{EntryHeader, EntryType, TarWriter};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a build's input stream held, as docker's `build -` (and the Engine API's `/build`
/// body) reads it: a context archive (tar, plain or compressed with gzip, bzip2, xz or
/// zstd), or a Dockerfile alone.
#[derive(Debug)]
pub enum StreamedContext {
    /// The context, unpacked (through oci-rs-layer's hardened apply) into a private
    /// temporary directory, removed when this is dropped.
    Context(tempfile::TempDir),
    /// A Dockerfile, with no context (`COPY` of the context finds nothing).
    Dockerfile(String),
}

impl StreamedContext {
    /// Reads `input` to its end: an archive is unpacked into a new directory under
    /// `scratch` (on the disk of the store, not `/tmp`), anything else is a Dockerfile of at
    /// most [`super::MAX_DOCKERFILE`] bytes in UTF-8.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), oci_rs_runtime::BuildError> {
    /// use oci_rs_runtime::StreamedContext;
    /// // What `docker build -` reads from its standard input; a file here.
    /// let input = tokio::fs::File::open("context-or-dockerfile").await?;
    /// match StreamedContext::read(input, "/var/tmp".as_ref()).await? {
    ///     StreamedContext::Context(dir) => println!("a context in {}", dir.path().display()),
    ///     StreamedContext::Dockerfile(text) => println!("{} bytes of Dockerfile", text.len()),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read<R>(mut input: R, scratch: &Path) -> Result<Self>
    where
        R: tokio::io::AsyncRead + Send + Unpin,
    {
        use tokio::io::AsyncReadExt;
        // Enough to see a compression's magic number or a whole tar header.
        let mut head = Vec::with_capacity(512);
        while head.len() < 512 {
            let mut buf = [0u8; 512];
            let n = input.read(&mut buf[..512 - head.len()]).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        // As docker's CLI tells one (`IsArchive`): a compression's magic number, or a tar
        // header; a compressed stream then goes through the decompressor the daemon uses.
        let compressed =
            super::archive::Compression::of(&head) != super::archive::Compression::None;
        let tar = <&[u8; 512]>::try_from(head.as_slice()).is_ok_and(super::archive::is_tar_header);
        let rest = std::io::Cursor::new(head).chain(input);
        if compressed || tar {
            let dir = tempfile::Builder::new()
                .prefix(".build-context-")
                .tempdir_in(scratch)?;
            let stream = super::archive::decompress(rest).await?;
            oci_rs_layer::apply_tar(dir.path(), stream, &oci_rs_layer::ApplyOptions::default())
                .await
                .context("unpacking the build context")?;
            return Ok(Self::Context(dir));
        }
        let mut text = Vec::new();
        rest.take(super::MAX_DOCKERFILE + 1)
            .read_to_end(&mut text)
            .await?;
        if text.len() as u64 > super::MAX_DOCKERFILE {
            bail!(
                "the Dockerfile read from the stream is over {} bytes",
                super::MAX_DOCKERFILE
            );
        }
        String::from_utf8(text)
            .map(Self::Dockerfile)
            .map_err(|_| super::error::invalid!("the Dockerfile read from the stream is not UTF-8"))
    }
}

/// A tree to copy from.
#[derive(Debug)]
pub struct Tree {
    root: Root,
    ignore: Ignore,
    /// Keep owners (another stage) instead of making everything 0:0 (the context).
    keep_owner: bool,
    label: String,
}

/// One entry to write: its header (path relative to the rootfs) and, for a regular file,
/// where its bytes are read.
#[derive(Debug)]
pub struct Entry {
    /// The header, path already mapped to the destination.
    pub header: EntryHeader,
    /// The file to read (regular files).
    pub source: Option<PathBuf>,
    /// For a source copied as the destination itself: the name it takes inside the
    /// destination when that is a directory, as the source named it (a link's own name, not
    /// its target's).
    pub name: Option<String>,
}

/// How many symlinks one source may go through (the kernel's limit).
const MAX_LINKS: usize = 40;

/// One match of a source in a tree.
struct Match {
    /// What it leads to: components from the tree's root, none of them a link.
    rel: Vec<String>,
    /// Its name as the source gave it (a link's own name); empty for the tree's root.
    name: String,
}

/// What one match of a source copies.
enum Copied {
    /// A directory: the entries under it, mapped under the destination.
    Dir(Vec<Entry>),
    /// Anything else: placed at the destination, or inside it.
    File {
        path: PathBuf,
        meta: std::fs::Metadata,
        name: String,
    },
}

/// How `--chown` and `--chmod` change entries.
#[derive(Debug, Clone, Default)]
pub struct Owner {
    /// uid:gid to set on everything.
    pub ids: Option<(u64, u64)>,
    /// Mode bits to set on everything.
    pub mode: Option<u32>,
}

/// What of its sources a `COPY` takes besides what `.dockerignore` leaves: its `--exclude`
/// patterns and `--parents`.
#[derive(Debug, Clone, Default)]
pub struct Select {
    /// `--exclude=PATTERN`s (`!` exceptions too), matched as `.dockerignore`'s are against
    /// a path as it lands under the destination: what is under a directory source, from
    /// that directory; a file source by its name. The reference says a file the source
    /// names is left out too (`COPY --exclude=*.txt hom* /mydir/`), which BuildKit itself
    /// does not do yet (moby/buildkit#5489, open): this follows the reference.
    pub exclude: Ignore,
    /// `--parents`: each source keeps its path under the destination, from the tree's root
    /// or from a `/./` in it (rsync's `--relative` pivot).
    pub parents: bool,
}

/// The entries of one `COPY`, with the descriptors that keep their parents open.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries, in write order.
    pub entries: Vec<Entry>,
    _dirs: Vec<OwnedFd>,
    /// A directory's contents are copied (maybe none): the destination directory is made
    /// even when nothing goes into it, as BuildKit copies a directory.
    dir_source: bool,
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Cleans a source path, refusing a `..` that climbs above the tree.
pub fn clean_source(raw: &str) -> Result<Vec<String>> {
    let mut depth = 0usize;
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." if depth == 0 => {
                bail!("{raw:?} is outside the build context")
            }
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    Ok(clean_components(raw))
}

/// Reads the file `rel` of the context at `dir` (the Dockerfile, `.dockerignore`) as BuildKit
/// reads them: resolved inside the context, a symlink in any component (the last one too)
/// followed as if the context were `/`, so `Dockerfile -> /etc/shadow` or `-> ../../secret`
/// names a file of the context, never one of the host. Where `openat2` is missing, a link is
/// refused instead. `Ok(None)` when there is no such file; a file larger than `max` bytes,
/// or one that is not a regular file (a FIFO would block the build), is an error.
pub fn read_context_file(dir: &Path, rel: &Path, max: u64) -> Result<Option<String>> {
    use std::io::Read;
    let what = || format!("{} in the build context {}", rel.display(), dir.display());
    let root =
        Root::open(dir).with_context(|| format!("opening the build context {}", dir.display()))?;
    let flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NONBLOCK;
    let fd = match root.resolve(rel, flags) {
        Ok(fd) => fd,
        Err(oci_rs_layer::Error::Fs { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", what())),
    };
    let file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", what()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", what());
    }
    if meta.len() > max {
        bail!("{} is larger than {max} bytes", what());
    }
    let mut text = String::new();
    file.take(max)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", what()))?;
    Ok(Some(text))
}

impl Tree {
    /// The build context at `dir`, with its `.dockerignore`.
    pub fn context(dir: &Path, ignore: Ignore) -> Result<Self> {
        Ok(Self {
            root: Root::open(dir)
                .with_context(|| format!("opening the context {}", dir.display()))?,
            ignore,
            keep_owner: false,
            label: "the build context".into(),
        })
    }

    /// Another stage's (or image's) filesystem at `dir`.
    pub fn filesystem(dir: &Path, label: &str) -> Result<Self> {
        Ok(Self {
            root: Root::open(dir)?,
            ignore: Ignore::default(),
            keep_owner: true,
            label: label.to_owned(),
        })
    }

    fn open_dir(&self, rel: &[String]) -> Result<OwnedFd> {
        let p: PathBuf = rel.iter().collect();
        Ok(self.root.open_dir(&p)?)
    }

    /// The matches of one source (a path or a glob), each followed inside the tree; none when
    /// nothing is there.
    fn expand(&self, src: &str) -> Result<Vec<Match>> {
        let comps = clean_source(src)?;
        let mut found: Vec<Vec<String>> = vec![Vec::new()];
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let mut next = Vec::new();
            for base in &found {
                if has_glob(c) {
                    let dir = match self.open_dir(base) {
                        Ok(d) => d,
                        Err(_) => continue,
                    };
                    let mut names: Vec<String> = std::fs::read_dir(fd_path(&dir))?
                        .flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| component_match(c, n))
                        .collect();
                    names.sort();
                    for n in names {
                        let mut p = base.clone();
                        p.push(n);
                        next.push(p);
                    }
                } else {
                    let mut p = base.clone();
                    p.push(c.clone());
                    next.push(p);
                }
            }
            found = next;
            if !last {
                // Only directories (or links to them, resolved inside) go on.
                found.retain(|p| self.open_dir(p).is_ok());
            }
        }
        let mut out = Vec::new();
        for p in found {
            let name = p.last().cloned().unwrap_or_default();
            if let Some(rel) = self.follow(&p, src)? {
                out.push(Match { rel, name });
            }
        }
        Ok(out)
    }

    /// `path` followed inside the tree as BuildKit follows a source (continuity's
    /// `RootPath`): a symlink in any component, the last one too, is replaced by its target,
    /// an absolute target starting again at the tree's root and `..` stopping there, through
    /// at most [`MAX_LINKS`] links. What it leads to (components from the root, none a link),
    /// or `None` when nothing is there (or a link on the way is excluded by `.dockerignore`,
    /// so it is not in the context BuildKit sees).
    fn follow(&self, path: &[String], src: &str) -> Result<Option<Vec<String>>> {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        use rustix::io::Errno;
        let what = || format!("following {src} in {}", self.label);
        // Components still to walk, the next one last.
        let mut todo: Vec<String> = path.iter().rev().cloned().collect();
        let mut out: Vec<String> = Vec::new();
        let mut dir = self.open_dir(&out)?;
        let mut links = 0usize;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    out.pop();
                    dir = self.open_dir(&out)?;
                    continue;
                }
                _ => {}
            }
            let st = match rustix::fs::statat(&dir, c.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
                Err(e) => return Err(e).with_context(what),
            };
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind == FileType::Symlink {
                links += 1;
                if links > MAX_LINKS {
                    bail!("{src}: too many levels of symbolic links in {}", self.label);
                }
                let mut at: Vec<&str> = out.iter().map(String::as_str).collect();
                at.push(&c);
                if self.ignore.excluded(&at) {
                    return Ok(None);
                }
                let target = rustix::fs::readlinkat(&dir, c.as_str(), Vec::new())
                    .with_context(what)?
                    .into_string()
                    .map_err(|_| {
                        super::error::invalid!(
                            "{src}: the link {} in {} has a target that is not UTF-8",
                            at.join("/"),
                            self.label
                        )
                    })?;
                if target.starts_with('/') {
                    out.clear();
                    dir = self.open_dir(&out)?;
                }
                todo.extend(target.split('/').rev().map(str::to_owned));
                continue;
            }
            if !todo.is_empty() {
                // Something follows: this must be a directory.
                if kind != FileType::Directory {
                    return Ok(None);
                }
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                dir = rustix::fs::openat(&dir, c.as_str(), flags, Mode::empty())
                    .with_context(what)?;
            }
            out.push(c);
        }
        Ok(Some(out))
    }

    /// Plans a copy of `sources` to `dest` (absolute, inside the rootfs, `/`-separated).
    /// `dest_is_dir`: the destination is a directory (a trailing `/`, several sources, or a
    /// directory that exists); otherwise a single file a source leads to (a wildcard's one
    /// match too) becomes `dest`, as BuildKit copies it, while several matches go inside it.
    ///
    /// A match that `.dockerignore` excludes is left out, unless it is a directory with
    /// something kept under it (an exception): as in the context BuildKit is sent, it is
    /// there, holding only that.
    pub fn plan(
        &self,
        sources: &[String],
        dest: &str,
        dest_is_dir: bool,
        owner: &Owner,
    ) -> Result<Plan> {
        self.plan_with(sources, dest, dest_is_dir, owner, &Select::default())
    }

    /// [`Tree::plan`] with `--exclude` and `--parents` ([`Select`]).
    pub fn plan_with(
        &self,
        sources: &[String],
        dest: &str,
        dest_is_dir: bool,
        owner: &Owner,
        select: &Select,
    ) -> Result<Plan> {
        let dest = clean_components(dest);
        let mut plan = Plan::default();
        let mut copies = Vec::new();
        for src in sources {
            if select.parents {
                let entries = self.with_parents(src, &dest, owner, select, &mut plan)?;
                copies.push(Copied::Dir(entries));
                continue;
            }
            let mut kept = 0usize;
            // Matches that `--exclude` left out: not "no such file".
            let mut left_out = 0usize;
            for m in self.expand(src)? {
                let (parent, last) = match m.rel.split_last() {
                    Some((last, parent)) => (parent, last.as_str()),
                    None => (&[][..], ""),
                };
                let dir = self.open_dir(parent)?;
                // `/proc/self/fd/N` itself is a link; `/proc/self/fd/N/.` is the directory.
                let path = if last.is_empty() {
                    fd_path(&dir).join(".")
                } else {
                    fd_path(&dir).join(last)
                };
                let meta = std::fs::symlink_metadata(&path)
                    .with_context(|| format!("reading {src} in {}", self.label))?;
                let at: Vec<&str> = m.rel.iter().map(String::as_str).collect();
                let state = self.ignore.at(&at);
                if meta.is_dir() {
                    if state.excluded() && !self.ignore.may_reinclude_under(&at) {
                        continue;
                    }
                    let mut walk = Walk::new(self, owner, &select.exclude, None, dest.len());
                    let at = At {
                        ignore: state.clone(),
                        exclude: select.exclude.root(),
                        include: None,
                    };
                    walk.dir(&path, &mut m.rel.clone(), &at, &mut dest.clone())?;
                    if state.excluded() && walk.entries.is_empty() {
                        continue;
                    }
                    copies.push(Copied::Dir(walk.entries));
                } else {
                    if state.excluded() {
                        continue;
                    }
                    if select.exclude.excluded(&[m.name.as_str()]) {
                        left_out += 1;
                        continue;
                    }
                    copies.push(Copied::File {
                        path,
                        meta,
                        name: m.name,
                    });
                }
                plan._dirs.push(dir);
                kept += 1;
            }
            if kept == 0 && left_out == 0 {
                bail!("{src}: no such file or directory in {}", self.label);
            }
        }
        let dest_is_dir = dest_is_dir || dest.is_empty() || copies.len() > 1;
        for c in copies {
            match c {
                Copied::Dir(entries) => {
                    plan.dir_source = true;
                    plan.entries.extend(entries)
                }
                Copied::File { path, meta, name } => {
                    let mut to = dest.clone();
                    if dest_is_dir {
                        to.push(name.clone());
                    }
                    let mut e = self.entry(&path, &meta, &to, owner)?;
                    e.name = Some(name);
                    plan.entries.push(e);
                }
            }
        }
        Ok(plan)
    }

    /// The entries of one `COPY --parents` source, as BuildKit's dockerfile frontend copies
    /// it: split at its first `/./` into a base and a pattern (no `/./`: the tree's root and
    /// the whole source), the base's directories (a wildcard may match several, each
    /// followed inside the tree as a source is) walked for what the pattern matches, every
    /// match landing under `dest` at its path from the base, the directories on the way
    /// made with their own mode and owner. A source without wildcards must match; one with
    /// wildcards may match nothing.
    fn with_parents(
        &self,
        src: &str,
        dest: &[String],
        owner: &Owner,
        select: &Select,
        plan: &mut Plan,
    ) -> Result<Vec<Entry>> {
        let (base, pattern) = src.split_once("/./").unwrap_or(("/", src));
        let required = !wildcards(base) && !wildcards(pattern);
        let pattern = clean_components(pattern).join("/");
        // An empty pattern (`dir/./`): everything under the base.
        let include = (!pattern.is_empty()).then(|| Ignore::from_patterns([pattern.as_str()]));
        let mut entries = Vec::new();
        for m in self.expand(base)? {
            let Ok(dir) = self.open_dir(&m.rel) else {
                continue;
            };
            let at: Vec<&str> = m.rel.iter().map(String::as_str).collect();
            let state = self.ignore.at(&at);
            if state.excluded() && !self.ignore.may_reinclude_under(&at) {
                continue;
            }
            let mut walk = Walk::new(self, owner, &select.exclude, include.as_ref(), dest.len());
            let start = At {
                ignore: state,
                exclude: select.exclude.root(),
                include: include.as_ref().map(Ignore::root),
            };
            let path = fd_path(&dir).join(".");
            walk.dir(&path, &mut m.rel.clone(), &start, &mut dest.to_vec())?;
            entries.append(&mut walk.entries);
            plan._dirs.push(dir);
        }
        if required && entries.is_empty() {
            bail!("{src}: no such file or directory in {}", self.label);
        }
        Ok(entries)
    }

    fn entry(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        to: &[String],
        owner: &Owner,
    ) -> Result<Entry> {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryType::Directory
        } else if ft.is_symlink() {
            EntryType::Symlink
        } else if ft.is_file() {
            EntryType::Regular
        } else if ft.is_fifo() {
            EntryType::Fifo
        } else if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else {
            bail!("{}: a socket cannot be copied", to.join("/"));
        };
        let mut h = EntryHeader::new(to.join("/").into_bytes(), kind);
        h.mode = meta.mode() & 0o7777;
        if let Some(m) = owner.mode {
            h.mode = m;
        }
        (h.uid, h.gid) = match owner.ids {
            Some(ids) => ids,
            None if self.keep_owner => (u64::from(meta.uid()), u64::from(meta.gid())),
            None => (0, 0),
        };
        h.mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        let mut source = None;
        match kind {
            EntryType::Regular => {
                h.size = meta.len();
                source = Some(path.to_path_buf());
            }
            EntryType::Symlink => {
                use std::os::unix::ffi::OsStrExt;
                h.link = std::fs::read_link(path)?.as_os_str().as_bytes().to_vec();
            }
            EntryType::Char | EntryType::Block => {
                let r = meta.rdev();
                h.dev = (rustix::fs::major(r), rustix::fs::minor(r));
            }
            _ => {}
        }
        Ok(Entry {
            header: h,
            source,
            name: None,
        })
    }
}

/// Where the patterns of a walk stand at one path.
#[derive(Clone)]
struct At {
    /// `.dockerignore`'s, from the tree's root.
    ignore: Matches,
    /// `--exclude`'s, from the walk's start.
    exclude: Matches,
    /// `--parents`' pattern, from the walk's start (none: everything is taken).
    include: Option<Matches>,
}

/// The entries under one directory a source leads to, as BuildKit's copier makes them.
struct Walk<'a> {
    tree: &'a Tree,
    owner: &'a Owner,
    /// `--exclude` patterns.
    exclude: &'a Ignore,
    /// `--parents`' pattern: only what it matches (and what is under that) is taken.
    include: Option<&'a Ignore>,
    /// Where the walk's start is in the destination paths (`to[start..]` is the path from
    /// the start, which `--exclude` and `--parents`' pattern see).
    start: usize,
    entries: Vec<Entry>,
    /// The directories above the current entry that are not written yet (excluded, or
    /// not matched by `--parents`' pattern): each is written (as the parent it is) before
    /// the first entry kept under it, and not at all when none is.
    pending: Vec<Entry>,
    /// Where each file with several links was first written ((device, inode) to its path in
    /// the rootfs): the others are hard links to it.
    inodes: HashMap<(u64, u64), Vec<u8>>,
}

impl<'a> Walk<'a> {
    fn new(
        tree: &'a Tree,
        owner: &'a Owner,
        exclude: &'a Ignore,
        include: Option<&'a Ignore>,
        start: usize,
    ) -> Self {
        Self {
            tree,
            owner,
            exclude,
            include,
            start,
            entries: Vec::new(),
            pending: Vec::new(),
            inodes: HashMap::new(),
        }
    }

    fn push(&mut self, e: Entry) {
        self.entries.append(&mut self.pending);
        self.entries.push(e);
    }

    /// Every entry under the directory `path` (tree path `rel`, where the patterns stand at
    /// `at`), mapped under `to`.
    fn dir(
        &mut self,
        path: &Path,
        rel: &mut Vec<String>,
        at: &At,
        to: &mut Vec<String>,
    ) -> Result<()> {
        let tree = self.tree;
        let mut names: Vec<String> = std::fs::read_dir(path)
            .with_context(|| format!("listing {} in {}", rel.join("/"), tree.label))?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for n in names {
            let child = path.join(&n);
            let inner = At {
                ignore: tree.ignore.enter(&at.ignore, &n),
                exclude: self.exclude.enter(&at.exclude, &n),
                include: match (self.include, &at.include) {
                    (Some(i), Some(m)) => Some(i.enter(m, &n)),
                    _ => None,
                },
            };
            // An include pattern's "excluded" is a match: taken.
            let matched = inner.include.as_ref().is_none_or(Matches::excluded);
            let kept = matched && !inner.ignore.excluded() && !inner.exclude.excluded();
            rel.push(n.clone());
            to.push(n);
            let meta = std::fs::symlink_metadata(&child)
                .with_context(|| format!("reading {} in {}", rel.join("/"), tree.label))?;
            if meta.is_dir() {
                let e = tree.entry(&child, &meta, to, self.owner)?;
                if kept {
                    self.push(e);
                    self.dir(&child, rel, &inner, to)?;
                } else if self.may_keep_under(&inner, matched, rel, to) {
                    let depth = self.pending.len();
                    self.pending.push(e);
                    self.dir(&child, rel, &inner, to)?;
                    self.pending.truncate(depth);
                }
            } else if kept {
                let mut e = tree.entry(&child, &meta, to, self.owner)?;
                if e.header.kind == EntryType::Regular && meta.nlink() > 1 {
                    use std::collections::hash_map::Entry as Slot;
                    match self.inodes.entry((meta.dev(), meta.ino())) {
                        Slot::Occupied(first) => {
                            e.header.kind = EntryType::Link;
                            e.header.link = first.get().clone();
                            e.header.size = 0;
                            e.source = None;
                        }
                        Slot::Vacant(slot) => {
                            slot.insert(e.header.path.clone());
                        }
                    }
                }
                self.push(e);
            }
            rel.pop();
            to.pop();
        }
        Ok(())
    }

    /// Whether something under a directory that is not kept itself (at `inner`; `matched`
    /// by `--parents`' pattern or not) could be: each set of patterns that leaves it out
    /// could take something below it.
    fn may_keep_under(&self, inner: &At, matched: bool, rel: &[String], to: &[String]) -> bool {
        let ctx: Vec<&str> = rel.iter().map(String::as_str).collect();
        let from_start: Vec<&str> = to[self.start..].iter().map(String::as_str).collect();
        (!inner.ignore.excluded() || self.tree.ignore.may_reinclude_under(&ctx))
            && (!inner.exclude.excluded() || self.exclude.may_reinclude_under(&from_start))
            && (matched
                || match (self.include, &inner.include) {
                    (Some(i), Some(m)) => i.may_match_under(m),
                    _ => true,
                })
    }
}

/// Whether a source path has wildcards (`*`, `?`, `[`), a `\`-escaped one not counting
/// (BuildKit's `containsWildcards`).
fn wildcards(p: &str) -> bool {
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' | '[' => return true,
            '\\' => {
                chars.next();
            }
            _ => {}
        }
    }
    false
}

fn open_source(p: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .with_context(|| format!("opening {}", p.display()))
}

impl Plan {
    /// Adds another plan's entries after these.
    pub fn append(&mut self, other: Plan) {
        self.entries.extend(other.entries);
        self._dirs.extend(other._dirs);
        self.dir_source |= other.dir_source;
    }

    /// The file of a plan that is one regular file which is an archive (a tar, plain or
    /// compressed, told by its bytes: [`super::archive::is_archive`]): what `ADD` unpacks.
    pub async fn single_archive(&self) -> Option<PathBuf> {
        let [e] = self.entries.as_slice() else {
            return None;
        };
        let src = e.source.as_ref()?;
        let f = open_source(src).ok()?;
        super::archive::is_archive(f).await.then(|| src.clone())
    }

    /// A single entry planned as the file `dest` goes inside `dest` instead (it is a
    /// directory in the step's filesystem).
    pub fn move_into_dir(&mut self, dest: &str) {
        let base = clean_components(dest);
        for e in &mut self.entries {
            let name = match &e.name {
                Some(n) => n.clone().into_bytes(),
                None => e
                    .header
                    .path
                    .rsplit(|&b| b == b'/')
                    .next()
                    .unwrap_or_default()
                    .to_vec(),
            };
            let mut p = base.join("/").into_bytes();
            p.push(b'/');
            p.extend_from_slice(&name);
            e.header.path = p;
        }
    }

    /// Puts a directory entry first for each directory the copy needs and the root does not
    /// have (`exists` says, through links): the ancestors of every entry, and `dest`
    /// (absolute) itself when entries go under it (or a directory's contents were copied,
    /// even none). They belong to the `--chown` owner and have the `--chmod` mode (0755
    /// without one), shallowest first, as BuildKit makes them.
    pub fn create_missing_dirs(
        &mut self,
        dest: Option<&str>,
        exists: impl Fn(&str) -> bool,
        (uid, gid): (u64, u64),
        mode: Option<u32>,
        mtime: u64,
    ) {
        let have: std::collections::HashSet<Vec<u8>> =
            self.entries.iter().map(|e| e.header.path.clone()).collect();
        let mut wanted: std::collections::BTreeSet<(usize, Vec<u8>)> = Default::default();
        let add = |path: &[u8], wanted: &mut std::collections::BTreeSet<_>| {
            let mut at = 0;
            let mut depth = 0;
            while let Some(k) = path[at..].iter().position(|&b| b == b'/') {
                depth += 1;
                let prefix = &path[..at + k];
                if !prefix.is_empty() && !have.contains(prefix) {
                    wanted.insert((depth, prefix.to_vec()));
                }
                at += k + 1;
            }
        };
        for e in &self.entries {
            add(&e.header.path, &mut wanted);
        }
        if let Some(dest) = dest {
            let base = clean_components(dest).join("/");
            let mut prefix = base.clone().into_bytes();
            prefix.push(b'/');
            let under = self
                .entries
                .iter()
                .any(|e| e.header.path.starts_with(&prefix));
            if !base.is_empty() && (self.dir_source || under) && !have.contains(base.as_bytes()) {
                add(&prefix, &mut wanted);
            }
        }
        let mut made = Vec::new();
        for (_, dir) in wanted {
            if exists(&String::from_utf8_lossy(&dir)) {
                continue;
            }
            let mut h = EntryHeader::new(dir, EntryType::Directory);
            h.mode = mode.unwrap_or(0o755);
            h.uid = uid;
            h.gid = gid;
            h.mtime = mtime;
            made.push(Entry {
                header: h,
                source: None,
                name: None,
            });
        }
        self.entries.splice(0..0, made);
    }

    /// The owner of the first entry (what `--chown` set).
    pub fn owner_of_first(&self) -> Option<(u64, u64)> {
        self.entries.first().map(|e| (e.header.uid, e.header.gid))
    }

    /// Sets every entry's owner (`--chown` by name, resolved in the step's filesystem).
    pub fn set_owner(&mut self, uid: u64, gid: u64) {
        for e in &mut self.entries {
            e.header.uid = uid;
            e.header.gid = gid;
        }
    }

    /// The content digest the cache keys on: names, types, modes, owners, link targets and
    /// bytes, not times.
    pub fn digest(&self) -> Result<String> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for e in &self.entries {
            let x = &e.header;
            h.update(&x.path);
            h.update(format!(
                "\0{:?}\0{:o}\0{}\0{}\0{:?}\0",
                x.kind, x.mode, x.uid, x.gid, x.dev
            ));
            h.update(&x.link);
            if let Some(src) = &e.source {
                use std::io::Read;
                let mut f = open_source(src)?;
                let mut n = 0u64;
                loop {
                    let k = f.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                    h.update(&buf[..k]);
                }
                h.update(n.to_le_bytes());
            }
            h.update(b"\n");
        }
        Ok(format!("{:x}", h.finalize()))
    }

    /// Writes the entries into `rootfs` (one tar streamed into `oci_rs_layer::apply_tar`).
    /// `mtime` replaces every time when set (`SOURCE_DATE_EPOCH`).
    pub async fn write(self, rootfs: &Path, mtime: Option<u64>) -> Result<()> {
        let (w, r) = tokio::io::duplex(1 << 20);
        let entries = self.entries;
        let produce = async move {
            let mut t = TarWriter::new(w);
            for mut e in entries {
                if let Some(m) = mtime {
                    e.header.mtime = e.header.mtime.min(m);
                }
                match &e.source {
                    Some(src) => {
                        let f = tokio::fs::File::from_std(open_source(src)?);
                        let mut f = tokio::io::BufReader::with_capacity(1 << 20, f);
                        t.file(&e.header, &mut f).await?;
                    }
                    None => t.header(&e.header).await?,
                }
            }
            let mut w = t.finish().await?;
            tokio::io::AsyncWriteExt::shutdown(&mut w).await?;
            Ok::<_, BuildError>(())
        };
        let opts = oci_rs_layer::ApplyOptions::default();
        let consume = oci_rs_layer::apply_tar(rootfs, r, &opts);
        let (a, b) = tokio::join!(produce, consume);
        b.context("writing the copied files into the step's filesystem")?;
        a
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sources_never_leave_the_tree() {
        assert!(clean_source("../x").is_err());
        assert!(clean_source("a/../../x").is_err());
        assert_eq!(clean_source("/a/./b/../c").unwrap(), ["a", "c"]);
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("ctx")).unwrap();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("../secret", d.path().join("ctx/link")).unwrap();
        std::os::unix::fs::symlink("/", d.path().join("ctx/up")).unwrap();
        std::fs::create_dir(d.path().join("ctx/a")).unwrap();
        std::os::unix::fs::symlink("a/../../../secret", d.path().join("ctx/climb")).unwrap();
        std::os::unix::fs::symlink("loop", d.path().join("ctx/loop")).unwrap();
        let t = Tree::context(&d.path().join("ctx"), Ignore::default()).unwrap();
        // A link is followed inside the context, where `../secret`, `/`'s `secret` and
        // `a/../../../secret` are the context's `secret`: there is none.
        for src in ["link", "up/secret", "climb", "up/link", "up/up/link"] {
            let err = t
                .plan(&[src.into()], "/x", false, &Owner::default())
                .unwrap_err();
            assert!(err.to_string().contains("no such file"), "{src}: {err}");
        }
        let err = t
            .plan(&["loop".into()], "/x", false, &Owner::default())
            .unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
        // Once the context has one, that is what they lead to.
        std::fs::write(d.path().join("ctx/secret"), "context").unwrap();
        for src in ["link", "up/secret", "climb", "up/link"] {
            let p = t
                .plan(&[src.into()], "/x", false, &Owner::default())
                .unwrap();
            let [e] = p.entries.as_slice() else {
                panic!("{src}: {p:?}")
            };
            assert_eq!(e.header.kind, EntryType::Regular, "{src}");
            assert_eq!(e.header.path, b"x", "{src}");
            assert_eq!(e.name.as_deref(), Some(src.rsplit('/').next().unwrap()));
            let read = std::fs::read_to_string(e.source.as_ref().unwrap()).unwrap();
            assert_eq!(read, "context", "{src}");
        }
    }

    #[test]
    fn links_inside_a_copied_directory_stay_links_and_hard_links_stay_linked() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path();
        std::fs::create_dir_all(c.join("dir/sub")).unwrap();
        std::fs::write(c.join("dir/a"), "a").unwrap();
        std::fs::hard_link(c.join("dir/a"), c.join("dir/sub/b")).unwrap();
        std::os::unix::fs::symlink("../a", c.join("dir/sub/l")).unwrap();
        std::os::unix::fs::symlink("dir", c.join("dl")).unwrap();
        let t = Tree::context(c, Ignore::default()).unwrap();
        let p = t
            .plan(&["dl".into()], "/d", false, &Owner::default())
            .unwrap();
        let got: Vec<(String, EntryType, String)> = p
            .entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8(e.header.path.clone()).unwrap(),
                    e.header.kind,
                    String::from_utf8(e.header.link.clone()).unwrap(),
                )
            })
            .collect();
        let want = [
            ("d/a", EntryType::Regular, ""),
            ("d/sub", EntryType::Directory, ""),
            ("d/sub/b", EntryType::Link, "d/a"),
            ("d/sub/l", EntryType::Symlink, "../a"),
        ]
        .map(|(p, k, l)| (p.to_owned(), k, l.to_owned()));
        assert_eq!(got, want);
        // Each source on its own, as BuildKit copies each: two files.
        let p = t
            .plan(
                &["dir/a".into(), "dir/sub/b".into()],
                "/e",
                true,
                &Owner::default(),
            )
            .unwrap();
        assert!(p
            .entries
            .iter()
            .all(|e| e.header.kind == EntryType::Regular));
    }

    #[test]
    fn globs_directories_and_ignores() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path();
        std::fs::create_dir_all(c.join("src/sub")).unwrap();
        std::fs::write(c.join("a.txt"), "a").unwrap();
        std::fs::write(c.join("b.txt"), "b").unwrap();
        std::fs::write(c.join("src/x.rs"), "x").unwrap();
        std::fs::write(c.join("src/sub/y.rs"), "y").unwrap();
        std::fs::write(c.join("src/sub/keep.md"), "k").unwrap();
        let ig = Ignore::parse("src/sub\n!src/sub/keep.md\n");
        let t = Tree::context(c, ig).unwrap();
        let paths = |p: &Plan| -> Vec<String> {
            p.entries
                .iter()
                .map(|e| String::from_utf8(e.header.path.clone()).unwrap())
                .collect()
        };
        let p = t
            .plan(&["*.txt".into()], "/d", true, &Owner::default())
            .unwrap();
        assert_eq!(paths(&p), ["d/a.txt", "d/b.txt"]);
        let p = t
            .plan(&["src".into()], "/app", true, &Owner::default())
            .unwrap();
        assert_eq!(paths(&p), ["app/sub", "app/sub/keep.md", "app/x.rs"]);
        let p = t
            .plan(&["a.txt".into()], "/f", false, &Owner::default())
            .unwrap();
        assert_eq!(paths(&p), ["f"]);
        // The context root is its contents, not the /proc link that names it; an excluded
        // directory is left out while an exception inside it is kept.
        let all = t
            .plan(&[".".into()], "/c", true, &Owner::default())
            .unwrap();
        assert_eq!(
            paths(&all),
            [
                "c/a.txt",
                "c/b.txt",
                "c/src",
                "c/src/sub",
                "c/src/sub/keep.md",
                "c/src/x.rs"
            ]
        );
        // The excluded directory, named or matched, holds what is kept in it.
        for src in ["src/sub", "src/s*"] {
            let p = t
                .plan(&[src.into()], "/k", false, &Owner::default())
                .unwrap();
            assert_eq!(paths(&p), ["k/keep.md"], "{src}");
        }
        let digest = p.digest().unwrap();
        std::fs::write(c.join("a.txt"), "A").unwrap();
        assert_ne!(
            t.plan(&["a.txt".into()], "/f", false, &Owner::default())
                .unwrap()
                .digest()
                .unwrap(),
            digest
        );
        assert!(t
            .plan(&["src/sub/y.rs".into()], "/f", false, &Owner::default())
            .is_err());
    }

    /// The paths (and for links their targets) `sources` plan under `/out/` with `select`.
    fn planned(t: &Tree, sources: &[&str], select: &Select) -> Result<Vec<String>> {
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let p = t.plan_with(&sources, "/out/", true, &Owner::default(), select)?;
        Ok(p.entries
            .iter()
            .map(|e| String::from_utf8(e.header.path.clone()).unwrap())
            .collect())
    }

    fn parents() -> Select {
        Select {
            parents: true,
            ..Select::default()
        }
    }

    /// BuildKit's `testCopyRelativeParents` and `testCopyParentsMissingDirectory`
    /// (frontend/dockerfile/dockerfile_parents_test.go), on the same tree.
    #[test]
    fn parents_keep_the_path_from_the_root_or_from_a_pivot() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path();
        for dir in ["a/b/c/d/e", "a/b2/c/d/e", "a/b/c2/d/e", "a/b/c2/d/e2"] {
            std::fs::create_dir_all(c.join("test").join(dir)).unwrap();
        }
        for f in [
            "a/b/c/d/foo",
            "a/b/c/d/e/bay",
            "a/b2/c/d/e/bar",
            "a/b/c2/d/e/baz",
            "a/b/c2/d/e2/baz",
        ] {
            std::fs::write(c.join("test").join(f), f).unwrap();
        }
        let t = Tree::filesystem(c, "--from=base").unwrap();
        let got = |srcs: &[&str]| planned(&t, srcs, &parents()).unwrap();
        let under_d = ["c", "c/d", "c/d/e", "c/d/e/bay", "c/d/foo"];
        let want = |prefix: &str, rest: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = Vec::new();
            let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
            for k in 1..=parts.len() {
                v.push(format!("out/{}", parts[..k].join("/")));
            }
            for r in rest {
                v.push(format!("out/{prefix}{r}"));
            }
            v
        };
        // middle: only what follows the pivot.
        assert_eq!(got(&["/test/a/b/./c/d"]), want("", &under_d));
        // end, start: no pivot (a trailing `/.` is none), the whole path.
        let whole = want("test/a/b/", &under_d);
        assert_eq!(got(&["/test/a/b/c/d/."]), whole);
        assert_eq!(got(&["./test/a/b/c/d"]), whole);
        assert_eq!(got(&["test/a/b/c/d"]), whole);
        // double: the first pivot.
        let b = ["b", "b/c", "b/c/d", "b/c/d/e", "b/c/d/e/bay", "b/c/d/foo"];
        assert_eq!(got(&["/test/a/./b/./c"]), want("", &b));
        // wildcard after the pivot.
        let wild = got(&["/test/a/./*/c"]);
        for p in ["out/b/c/d/e/bay", "out/b/c/d/foo", "out/b2/c/d/e/bar"] {
            assert!(wild.contains(&p.to_owned()), "{p}: {wild:?}");
        }
        assert!(!wild.iter().any(|p| p.contains("c2")), "{wild:?}");
        // doublewildcard: `**` over any number of directories, bases of a wildcard.
        let dw = got(&["/test/a/b*/./c/**/e"]);
        for p in ["out/c/d/e", "out/c/d/e/bay", "out/c/d/e/bar"] {
            assert!(dw.contains(&p.to_owned()), "{p}: {dw:?}");
        }
        assert!(!dw.contains(&"out/c/d/foo".to_owned()), "{dw:?}");
        // doubleinputs.
        let di = got(&["/test/a/b/c*/./d/**/baz", "/test/a/b*/./c/**/bar"]);
        for p in ["out/d/e/baz", "out/d/e2/baz", "out/c/d/e/bar"] {
            assert!(di.contains(&p.to_owned()), "{p}: {di:?}");
        }
        assert!(!di.iter().any(|p| p.ends_with("bay")), "{di:?}");
        // A path without wildcards must be there; with them, nothing may match.
        let err = planned(&t, &["/test/nonexistent-file"], &parents()).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
        assert!(got(&["/test/a/x*/c"]).is_empty());
        assert!(got(&["/test/a/b/./zz*"]).is_empty());
        // A file keeps its parents, which keep their modes.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(c.join("test/a"), PermissionsExt::from_mode(0o750)).unwrap();
        let p = t
            .plan_with(
                &["test/a/b/c/d/foo".into()],
                "/o",
                true,
                &Owner::default(),
                &parents(),
            )
            .unwrap();
        let modes: Vec<(String, u32)> = p
            .entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8(e.header.path.clone()).unwrap(),
                    e.header.mode,
                )
            })
            .collect();
        assert_eq!(modes[1], ("o/test/a".to_owned(), 0o750));
        assert_eq!(modes.last().unwrap().0, "o/test/a/b/c/d/foo");
        assert_eq!(modes.len(), 6);
    }

    /// BuildKit's `testExcludedFilesOnCopy` (frontend/dockerfile/exclude_patterns_test.go)
    /// on the same tree, and its documented example: a file a source names is left out too.
    #[test]
    fn excludes_leave_out_what_they_match_under_the_destination() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path();
        for (f, text) in [
            ("dir1/file-101.png", "2"),
            ("dir1/file-102.txt", "3"),
            ("dir1/file-103.jpeg", "4"),
            ("dir2/file-201.pdf", "6"),
            ("dir2/file-202.jpeg", "7"),
            ("dir2/file-203.png", "8"),
            ("dir3/file-301.mp3", "9"),
            ("dir3/file-302.mpeg", "10"),
            ("dir4/file-401.txt", "11"),
            ("home.txt", "h"),
            ("homer.md", "m"),
        ] {
            std::fs::create_dir_all(c.join(f).parent().unwrap()).unwrap();
            std::fs::write(c.join(f), text).unwrap();
        }
        std::os::unix::fs::symlink("file-401.txt", c.join("dir4/file-402.txt")).unwrap();
        let t = Tree::context(c, Ignore::default()).unwrap();
        let ex = |patterns: &[&str]| Select {
            exclude: Ignore::from_patterns(patterns.iter().copied()),
            parents: false,
        };
        let files = |srcs: &[&str], patterns: &[&str]| -> Vec<String> {
            let mut v = planned(&t, srcs, &ex(patterns)).unwrap();
            v.retain(|p| p.contains('.'));
            v
        };
        assert_eq!(
            files(&["."], &["*/*.png", "*/*.jpeg"]),
            [
                "out/dir1/file-102.txt",
                "out/dir2/file-201.pdf",
                "out/dir3/file-301.mp3",
                "out/dir3/file-302.mpeg",
                "out/dir4/file-401.txt",
                "out/dir4/file-402.txt",
                "out/home.txt",
                "out/homer.md",
            ]
        );
        assert_eq!(files(&["dir3/"], &["*.mp3"]), ["out/file-302.mpeg"]);
        assert_eq!(
            files(&["dir*"], &["*.mp3", "*.jpeg", "*.png", "*.pdf", "*.txt"]),
            ["out/file-302.mpeg"]
        );
        assert_eq!(
            files(&["dir*"], &["*.mp*", "*.jpeg", "*.png", "*.pdf"]),
            ["out/file-102.txt", "out/file-401.txt", "out/file-402.txt"]
        );
        // Everything excluded: nothing, and no error.
        assert!(files(&["dir*"], &["*"]).is_empty());
        // The reference's example: files the source matches are left out by name.
        assert_eq!(files(&["hom*"], &["*.txt"]), ["out/homer.md"]);
        assert!(files(&["home.txt"], &["*.txt"]).is_empty());
        // An exception takes back what a pattern left out, under an excluded directory too.
        assert_eq!(
            files(&["."], &["dir1", "*.md", "*.txt", "!dir1/file-102.txt"]),
            [
                "out/dir1/file-102.txt",
                "out/dir2/file-201.pdf",
                "out/dir2/file-202.jpeg",
                "out/dir2/file-203.png",
                "out/dir3/file-301.mp3",
                "out/dir3/file-302.mpeg",
                "out/dir4/file-401.txt",
                "out/dir4/file-402.txt",
            ]
        );
        // With --parents, from the base.
        let both = Select {
            exclude: Ignore::from_patterns(["dir1/*.png", "*.md"]),
            parents: true,
        };
        let mut got = planned(&t, &["dir1", "hom*"], &both).unwrap();
        got.retain(|p| p.contains('.'));
        assert_eq!(
            got,
            [
                "out/dir1/file-102.txt",
                "out/dir1/file-103.jpeg",
                "out/home.txt"
            ]
        );
    }
}

#[cfg(test)]
mod missing_dirs_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The directories a copy needs and the root lacks come first, shallowest first, with
    /// the owner and mode given; those the root has (or the plan itself makes) do not.
    #[test]
    fn missing_parents_take_the_copys_owner_and_mode() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), "f").unwrap();
        let t = Tree::context(d.path(), Ignore::default()).unwrap();
        let mut p = t
            .plan(&["f".into()], "/p/q/f", false, &Owner::default())
            .unwrap();
        let have = ["etc"];
        p.create_missing_dirs(None, |x| have.contains(&x), (3, 4), Some(0o700), 0);
        let got: Vec<(String, u32, u64)> = p
            .entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8(e.header.path.clone()).unwrap(),
                    e.header.mode,
                    e.header.uid,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("p".to_owned(), 0o700, 3),
                ("p/q".to_owned(), 0o700, 3),
                ("p/q/f".to_owned(), 0o644, 0)
            ]
        );
    }
}
