use crate::error::{Error, Result};
use oci_rs_image::{now_ns, parse_rfc3339, rfc3339};
use std::fs::File;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Which output a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output (and a terminal's output).
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    fn name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// How big logs may grow, and what else a container's log configuration says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLimits {
    /// Rotate when the current file passes this many bytes (None: never).
    pub max_size: Option<u64>,
    /// How many files to keep, the current one included (at least 1).
    pub max_files: u32,
    /// Keep nothing (docker's `none` log driver): the output still reaches attached
    /// clients, and `logs` has nothing to read.
    #[serde(default)]
    pub disabled: bool,
    /// Which of the container's labels and environment `logs --details` shows before each
    /// line (docker's `--log-opt labels=`, `labels-regex=`, `env=`, `env-regex=`).
    #[serde(default, skip_serializing_if = "LogAttributes::is_empty")]
    pub attributes: LogAttributes,
    /// The driver and options as given (`json-file`, `max-size=10m`), which `inspect` shows
    /// as docker does (`json-file` without options by default); `None` in records older than
    /// this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given: Option<(String, std::collections::BTreeMap<String, String>)>,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_size: None,
            max_files: 1,
            disabled: false,
            attributes: LogAttributes::default(),
            given: Some(("json-file".to_owned(), Default::default())),
        }
    }
}

/// The attributes docker's log drivers add to each message, from the container's labels
/// and environment, shown by `logs --details` (`k=v,k2=v2` before each line).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogAttributes {
    /// Labels by name (`labels=a,b`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Labels whose names match (`labels-regex=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_regex: Option<String>,
    /// Environment variables by name (`env=A,B`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Environment variables whose names match (`env-regex=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_regex: Option<String>,
}

impl LogAttributes {
    /// Nothing chosen.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
            && self.labels_regex.is_none()
            && self.env.is_empty()
            && self.env_regex.is_none()
    }

    /// The chosen attributes of a container with `labels` and environment `env` (`K=V`), as
    /// docker's `logs --details` prints them: sorted by name, each `name=value`
    /// query-escaped, joined by `,` (empty when none).
    ///
    /// ```
    /// use oci_rs_runtime::LogAttributes;
    /// let a = LogAttributes {
    ///     labels: vec!["team".into()],
    ///     env_regex: Some("^APP_".into()),
    ///     ..Default::default()
    /// };
    /// let labels = [("team".to_owned(), "a b".to_owned())].into();
    /// let env = ["APP_MODE=prod".to_owned(), "HOME=/root".to_owned()];
    /// assert_eq!(a.render(&labels, &env).unwrap(), "APP_MODE=prod,team=a+b");
    /// ```
    pub fn render(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
        env: &[String],
    ) -> Result<String> {
        let mut out: std::collections::BTreeMap<&str, &str> = Default::default();
        for l in &self.labels {
            if let Some((k, v)) = labels.get_key_value(l) {
                out.insert(k, v);
            }
        }
        if let Some(re) = &self.labels_regex {
            let re = compile(re, "labels-regex")?;
            out.extend(
                labels
                    .iter()
                    .filter(|(k, _)| re.is_match(k))
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        let env: Vec<(&str, &str)> = env.iter().filter_map(|e| e.split_once('=')).collect();
        for name in &self.env {
            // The last definition of a name is the one in effect.
            if let Some((k, v)) = env.iter().rev().find(|(k, _)| k == name) {
                out.insert(k, v);
            }
        }
        if let Some(re) = &self.env_regex {
            let re = compile(re, "env-regex")?;
            for (k, v) in &env {
                if re.is_match(k) {
                    out.insert(k, v);
                }
            }
        }
        Ok(out
            .iter()
            .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
            .collect::<Vec<_>>()
            .join(","))
    }
}

/// A `--log-opt` regular expression.
pub(crate) fn compile(re: &str, option: &'static str) -> Result<regex::Regex> {
    regex::Regex::new(re).map_err(|e| Error::InvalidOption {
        option,
        value: re.to_owned(),
        reason: e.to_string().into(),
    })
}

/// Go's `url.QueryEscape`: letters, digits and `-_.~` as they are, a space as `+`, every
/// other byte as `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Container logs in the CRI format, written by the [monitor](crate::Monitor) and read back
/// for `logs`.
///
/// One record per line: `TIMESTAMP STREAM TAG CONTENT`, where TIMESTAMP is RFC 3339 with
/// nanoseconds in UTC, STREAM is `stdout` or `stderr` and TAG is `F` for a record that ends a
/// line (its newline is implied) or `P` for part of a line (more follows). This is what
/// containerd, CRI-O's conmon and the kubelet use. It was chosen over docker's json-file
/// because it keeps output byte for byte: json-file must store a JSON string, which cannot
/// hold invalid UTF-8 (docker replaces it with U+FFFD), while a CRI record's content is the
/// raw bytes up to the newline that ends it. Reading concatenates the records of a stream:
/// partial lines, binary output and output without a final newline come back as they were
/// written.
///
/// Size cap: with `max_size`, a file that grows past it is renamed to `NAME.1` (older ones
/// shift up to `NAME.{max_files - 1}`, the oldest dropped) and a new one begins, as docker's
/// `--log-opt max-size=,max-file=`. A write that fails (a full disk) never blocks or stops
/// the container: the output is dropped and counted, and the next record that can be written
/// is preceded by one saying how many bytes were lost.
///
/// Writes CRI records into a log file, rotating it.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    limits: LogLimits,
    dropped: u64,
    /// A failed write left part of a record in the file: end it before the next one.
    torn: bool,
    line: Vec<u8>,
}

impl LogWriter {
    /// Opens (appending) the log at `path`.
    pub fn open(path: &Path, limits: LogLimits) -> Result<Self> {
        let mut w = Self {
            path: path.to_owned(),
            file: None,
            size: 0,
            limits,
            dropped: 0,
            torn: false,
            line: Vec::with_capacity(64 << 10),
        };
        if !w.limits.disabled {
            w.reopen()?;
        }
        Ok(w)
    }

    fn reopen(&mut self) -> Result<()> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("open", &self.path, e))?;
        self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(f);
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        rotated(&self.path, n)
    }

    fn rotate(&mut self) {
        self.file = None;
        let keep = self.limits.max_files.max(1);
        if keep == 1 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(keep - 1));
            for n in (1..keep - 1).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            let _ = std::fs::rename(&self.path, self.rotated(1));
        }
        if let Err(e) = self.reopen() {
            tracing::warn!(error = %e, "reopening the container log");
        }
    }

    /// Records `data` read from `stream`: every complete line as an `F` record, a trailing
    /// partial line as a `P` record, so nothing waits for a newline.
    pub fn write(&mut self, stream: LogStream, data: &[u8]) {
        if self.limits.disabled {
            return;
        }
        let ts = rfc3339(now_ns());
        self.line.clear();
        if self.torn {
            // The torn record becomes a line of its own, which readers skip.
            self.line.push(b'\n');
        }
        if self.dropped > 0 {
            let note = format!(
                "{ts} stderr F [log truncated: {} bytes of output were lost, the log could not be written]\n",
                self.dropped
            );
            self.line.extend_from_slice(note.as_bytes());
        }
        let mut rest = data;
        while !rest.is_empty() {
            let (chunk, tag, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], b'F', &rest[i + 1..]),
                None => (rest, b'P', &rest[rest.len()..]),
            };
            self.line.extend_from_slice(ts.as_bytes());
            self.line.push(b' ');
            self.line.extend_from_slice(stream.name().as_bytes());
            self.line.push(b' ');
            self.line.push(tag);
            self.line.push(b' ');
            self.line.extend_from_slice(chunk);
            self.line.push(b'\n');
            rest = next;
        }
        let mut written = 0;
        if let Some(f) = &mut self.file {
            while written < self.line.len() {
                match f.write(&self.line[written..]) {
                    Ok(0) => break,
                    Ok(n) => written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let ok = written == self.line.len();
        if ok {
            self.torn = false;
        } else if written > 0 {
            self.torn = true;
        }
        if ok {
            self.dropped = 0;
            self.size += written as u64;
            if self.limits.max_size.is_some_and(|m| self.size > m) {
                self.rotate();
            }
        } else {
            self.dropped += data.len() as u64;
            if self.file.is_none() {
                let _ = self.reopen();
            }
        }
    }
}

/// What `logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only records at or after this time (nanoseconds since the epoch).
    pub since: Option<u64>,
    /// Only records before this time.
    pub until: Option<u64>,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Prefix each line with its timestamp.
    pub timestamps: bool,
    /// docker's `--details`: each line starts (after its timestamp) with this and a space.
    /// [`Containers::logs`](crate::Containers::logs) puts the container's attributes here
    /// ([`LogAttributes::render`]) in place of whatever `Some` it is given.
    pub details: Option<String>,
}

impl LogQuery {
    /// What goes before a line's content: its timestamp and the details asked for.
    fn line_prefix(&self, time: u64, bytes: &mut Vec<u8>) {
        if self.timestamps {
            bytes.extend_from_slice(rfc3339(time).as_bytes());
            bytes.push(b' ');
        }
        if let Some(d) = &self.details {
            bytes.extend_from_slice(d.as_bytes());
            bytes.push(b' ');
        }
    }
}

/// One record, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Nanoseconds since the epoch.
    pub time: u64,
    /// The stream.
    pub stream: LogStream,
    /// Whether it ends a line.
    pub full: bool,
    /// The bytes (without the implied newline).
    pub content: Vec<u8>,
}

/// Parses one CRI record (without its newline).
pub fn parse_log_record(line: &[u8]) -> Option<LogRecord> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(LogRecord {
        time: parse_rfc3339(ts)?,
        stream,
        full,
        content: parts.next().unwrap_or_default().to_vec(),
    })
}

/// `PATH.n`, the n-th rotated log.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.to_path_buf().into_os_string();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The log files of `path`, oldest first (rotated ones, then the current one).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    // Rotation keeps `.1` up to `.N` without gaps: count up to the first missing one.
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

/// Emits the records of the log at `path` that `query` selects to `out(stream, bytes)`, as
/// `logs` prints them (lines rebuilt from partial records, optional timestamps). Returns the
/// position reached in the current file, for [`follow_logs`].
pub fn read_logs(
    path: &Path,
    query: &LogQuery,
    out: &mut dyn FnMut(LogStream, &[u8]) -> std::io::Result<()>,
) -> Result<(u64, u64)> {
    // Memory stays flat however long the log or a line is: records are printed as they are
    // read. With --tail, a first pass counts lines (keeping only the streams of the last N)
    // to find the first line of each stream to print, and where each file ended, so that the
    // second pass prints those lines from the same records even while the log grows.
    let (first, ends) = match query.tail {
        None => ([0u64; 2], None),
        Some(n) => {
            let mut last: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
            let mut lines = [0u64; 2];
            let mut open = [false; 2];
            let push = |last: &mut std::collections::VecDeque<usize>, i: usize| {
                last.push_back(i);
                if last.len() > n {
                    last.pop_front();
                }
            };
            let ends = scan(path, query, None, &mut |rec| {
                let i = usize::from(rec.stream == LogStream::Stderr);
                open[i] = !rec.full;
                if rec.full {
                    lines[i] += 1;
                    push(&mut last, i);
                }
                Ok(())
            })?;
            // An unfinished last line is a line too.
            for (i, o) in open.into_iter().enumerate() {
                if o {
                    lines[i] += 1;
                    push(&mut last, i);
                }
            }
            let shown = |i: usize| last.iter().filter(|&&s| s == i).count() as u64;
            ([lines[0] - shown(0), lines[1] - shown(1)], Some(ends))
        }
    };
    let mut line = [0u64; 2];
    let mut at_start = [true; 2];
    let mut bytes = Vec::new();
    let ends = scan(path, query, ends.as_deref(), &mut |rec| {
        let i = usize::from(rec.stream == LogStream::Stderr);
        if line[i] >= first[i] {
            bytes.clear();
            if at_start[i] {
                query.line_prefix(rec.time, &mut bytes);
            }
            bytes.extend_from_slice(&rec.content);
            if rec.full {
                bytes.push(b'\n');
            }
            out(rec.stream, &bytes).map_err(|e| Error::io("write", "log output", e))?;
        }
        at_start[i] = rec.full;
        if rec.full {
            line[i] += 1;
        }
        Ok(())
    })?;
    Ok(ends.last().copied().unwrap_or((0, 0)))
}

/// Calls `f` with each record of the log files, oldest first, that `query`'s times select,
/// and returns each file's inode and the offset after its last whole record. With `upto`
/// (what an earlier scan returned), each file is read only as far as it was then, and a file
/// that was not there is skipped. One record in memory at a time.
fn scan(
    path: &Path,
    query: &LogQuery,
    upto: Option<&[(u64, u64)]>,
    f: &mut dyn FnMut(LogRecord) -> Result<()>,
) -> Result<Vec<(u64, u64)>> {
    let mut ends = Vec::new();
    for file in log_files(path) {
        let fh = match File::open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open", &file, e)),
        };
        let ino = std::os::unix::fs::MetadataExt::ino(
            &fh.metadata().map_err(|e| Error::io("stat", &file, e))?,
        );
        let limit = match upto {
            None => u64::MAX,
            Some(ends) => match ends.iter().find(|(i, _)| *i == ino) {
                Some((_, end)) => *end,
                None => continue,
            },
        };
        let mut r = std::io::BufReader::new(fh).take(limit);
        let mut line = Vec::new();
        let mut offset = 0u64;
        loop {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io("read", &file, e))?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            offset += n as u64;
            line.pop();
            let Some(rec) = parse_log_record(&line) else {
                continue;
            };
            if query.since.is_some_and(|s| rec.time < s)
                || query.until.is_some_and(|u| rec.time >= u)
            {
                continue;
            }
            f(rec)?;
        }
        ends.push((ino, offset));
    }
    Ok(ends)
}

/// The most `follow_logs` reads into memory at once.
const FOLLOW_CHUNK: u64 = 1 << 20;

/// Follows the log at `path` from `pos` (what [`read_logs`] returned) until `done()` says the
/// container has ended and everything written has been read, emitting new records as they
/// come (each as it is, partial ones included; lines begun as `query` says, its times and
/// tail aside) and going on into a new file after a rotation.
pub fn follow_logs(
    path: &Path,
    mut pos: (u64, u64),
    query: &LogQuery,
    done: &mut dyn FnMut() -> bool,
    out: &mut dyn FnMut(LogStream, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    let ino_of = |f: &File| {
        f.metadata()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap_or(0)
    };
    // The file is held open from here on: what it holds is read to its end even when the
    // container (and its log) is removed meanwhile, as a client that follows a `run --rm`
    // does.
    let mut file: Option<File> = File::open(path).ok();
    if let Some(f) = &file {
        if ino_of(f) != pos.0 {
            pos = (ino_of(f), 0);
        }
    }
    let mut buf = Vec::new();
    let mut at_line_start = [true, true];
    // A new file at the path, taken once the held one has been read again: the writer may
    // have ended the old one after the last read.
    let mut next: Option<File> = None;
    loop {
        let finished = done();
        let mut full_chunk = false;
        if let Some(f) = file.as_mut() {
            if f.seek(std::io::SeekFrom::Start(pos.1)).is_ok() {
                buf.clear();
                // A bounded read at a time, however much was written since the last one.
                let _ = (&mut *f).take(FOLLOW_CHUNK).read_to_end(&mut buf);
                full_chunk = buf.len() as u64 == FOLLOW_CHUNK;
                let mut complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                if complete == 0 && full_chunk {
                    // No record is this long (the writer's are far shorter): skip the bytes.
                    complete = buf.len();
                }
                for line in buf[..complete]
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    if let Some(rec) = parse_log_record(line) {
                        let i = usize::from(rec.stream == LogStream::Stderr);
                        let mut bytes = Vec::new();
                        if at_line_start[i] {
                            query.line_prefix(rec.time, &mut bytes);
                        }
                        bytes.extend_from_slice(&rec.content);
                        if rec.full {
                            bytes.push(b'\n');
                        }
                        at_line_start[i] = rec.full;
                        out(rec.stream, &bytes).map_err(|e| Error::io("write", "log output", e))?;
                    }
                }
                pos.1 += complete as u64;
            }
        }
        if full_chunk {
            continue;
        }
        if let Some(f) = next.take() {
            pos = (ino_of(&f), 0);
            file = Some(f);
            continue;
        }
        // Everything the held file has is read: a rotation (a new file at the path) is
        // followed from its start; a removed log ends with what the held file had.
        match File::open(path) {
            Ok(f) if file.as_ref().is_none_or(|old| ino_of(old) != ino_of(&f)) => {
                next = Some(f);
                continue;
            }
            _ => {}
        }
        if finished {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn collect(path: &Path, q: &LogQuery) -> (Vec<u8>, Vec<u8>) {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        read_logs(path, q, &mut |s, b| {
            match s {
                LogStream::Stdout => o.extend_from_slice(b),
                LogStream::Stderr => e.extend_from_slice(b),
            }
            Ok(())
        })
        .unwrap();
        (o, e)
    }

    /// A follower of a container that is removed as soon as it ends (`run --rm`) still
    /// gets what the log held: the file is held open, not opened again by its path.
    #[test]
    fn a_follow_reads_a_log_removed_under_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = LogWriter::open(&p, LogLimits::default()).unwrap();
        w.write(LogStream::Stdout, b"last words\n");
        // Where a follower that started before the container wrote stands: the start.
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&p).unwrap());
        let pos = (ino, 0);
        let mut got = Vec::new();
        let mut done = || {
            // The container ends and is removed before the follower reads on.
            let _ = std::fs::remove_file(&p);
            true
        };
        follow_logs(&p, pos, &LogQuery::default(), &mut done, &mut |_, b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, b"last words\n");
    }

    #[test]
    fn partial_lines_binary_and_streams_come_back_intact() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let mut w = LogWriter::open(&p, LogLimits::default()).unwrap();
        let binary: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n').collect();
        w.write(LogStream::Stdout, b"one\ntw");
        w.write(LogStream::Stderr, b"err\n");
        w.write(LogStream::Stdout, b"o\n");
        w.write(LogStream::Stdout, &binary);
        w.write(LogStream::Stdout, b"\nno newline at the end");
        let (o, e) = collect(&p, &LogQuery::default());
        let mut want = b"one\ntwo\n".to_vec();
        want.extend_from_slice(&binary);
        want.extend_from_slice(b"\nno newline at the end");
        assert_eq!(o, want);
        assert_eq!(e, b"err\n");
        let (o, _) = collect(
            &p,
            &LogQuery {
                tail: Some(1),
                ..Default::default()
            },
        );
        // The last line of each stream's output: the unfinished one.
        assert_eq!(o, b"no newline at the end");
    }

    #[test]
    fn rotation_keeps_max_files_and_reads_across_them() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let limits = LogLimits {
            max_size: Some(200),
            max_files: 3,
            ..LogLimits::default()
        };
        let mut w = LogWriter::open(&p, limits).unwrap();
        for i in 0..100 {
            w.write(LogStream::Stdout, format!("line {i}\n").as_bytes());
        }
        let files: Vec<_> = log_files(&p).into_iter().filter(|f| f.exists()).collect();
        assert_eq!(files.len(), 3, "{files:?}");
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(total < 3 * 300, "{total}");
        let (o, _) = collect(&p, &LogQuery::default());
        let text = String::from_utf8(o).unwrap();
        assert!(text.ends_with("line 99\n"), "{text}");
        let first: usize = text.lines().next().unwrap()[5..].parse().unwrap();
        let want: String = (first..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, want, "kept lines are consecutive and whole");
    }

    #[test]
    fn a_failed_write_is_counted_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let mut w = LogWriter::open(&p, LogLimits::default()).unwrap();
        // /dev/full fails every write with ENOSPC, as a full disk does.
        w.file = Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        );
        w.write(LogStream::Stdout, b"lost\n");
        assert_eq!(w.dropped, 5);
        w.reopen().unwrap();
        w.write(LogStream::Stdout, b"kept\n");
        let (o, e) = collect(&p, &LogQuery::default());
        assert_eq!(o, b"kept\n");
        assert!(String::from_utf8(e)
            .unwrap()
            .contains("5 bytes of output were lost"));
    }
}
