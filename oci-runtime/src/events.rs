//! The engine's event journal (see [`Journal`]).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The size at which the journal is rotated (one older generation is kept).
pub const JOURNAL_MAX: u64 = 4 << 20;
/// The longest line read back: a longer one (never written by the engine) is skipped.
const LINE_MAX: usize = 64 << 10;

/// One event: a `kind` of object (`container`, `network`, `volume`, `image`), what
/// happened to it (`create`, `start`, `die`, `destroy`, `connect`...), its id and docker's
/// attributes (`name`, `image`, `exitCode`, the container's labels...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The object's kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened.
    pub action: String,
    /// The object's id (a container's full id, a network's or volume's name).
    pub id: String,
    /// docker's attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// When, in nanoseconds since the epoch.
    pub time_nano: u64,
}

impl Event {
    /// An event of now.
    pub fn new(kind: &str, action: &str, id: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            action: action.to_owned(),
            id: id.to_owned(),
            attributes: BTreeMap::new(),
            time_nano: crate::now_ns(),
        }
    }

    /// The event with attribute `key` set to `value`.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(key.to_owned(), value.into());
        self
    }

    /// docker's JSON of the event (`Type`, `Action`, `Actor`, `time`, `timeNano`, and the
    /// `status`, `id` and `from` of its older clients for a container's).
    pub fn docker_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": { "ID": self.id, "Attributes": self.attributes },
            "scope": "local",
            "time": self.time_nano / 1_000_000_000,
            "timeNano": self.time_nano,
        });
        if self.kind == "container" {
            v["status"] = self.action.clone().into();
            v["id"] = self.id.clone().into();
            if let Some(image) = self.attributes.get("image") {
                v["from"] = image.clone().into();
            }
        }
        v
    }

    /// What `events --format` templates see: [`docker_json`](Self::docker_json) with the
    /// field names of docker's Go type too (`.Status`, `.ID`, `.From`, `.Scope`, `.Time`,
    /// `.TimeNano`), as docker's CLI renders its templates from that type.
    pub fn template_fields(&self) -> serde_json::Value {
        let mut v = self.docker_json();
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
        let (status, id, from) = (text("status"), text("id"), text("from"));
        v["Status"] = status.into();
        v["ID"] = id.into();
        v["From"] = from.into();
        v["Scope"] = "local".into();
        v["Time"] = (self.time_nano / 1_000_000_000).into();
        v["TimeNano"] = self.time_nano.into();
        v
    }

    /// docker's line of the event: `TIME TYPE ACTION ID (KEY=VALUE, ...)`, with what the
    /// event carries made printable (a label's value may hold anything).
    pub fn docker_line(&self) -> String {
        let clean = |s: &str| {
            s.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect::<String>()
        };
        let attrs: Vec<String> = self
            .attributes
            .iter()
            .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
            .collect();
        format!(
            "{} {} {} {} ({})",
            crate::rfc3339(self.time_nano),
            clean(&self.kind),
            clean(&self.action),
            clean(&self.id),
            attrs.join(", ")
        )
    }

    /// The event with every attribute of `attrs` (a container's labels, say) added.
    pub fn with_all<'a>(
        mut self,
        attrs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        for (k, v) in attrs {
            self.attributes
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        self
    }
}

/// docker's `events --filter` terms: `type=`, `event=` (the action), `container=` (an id
/// prefix or a name), `image=`, `label=KEY` or `label=KEY=VALUE`, `network=`, `volume=`.
/// Terms of one key are alternatives; of different keys, all must hold (every `label` term
/// must, as docker has it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    terms: BTreeMap<String, Vec<String>>,
}

/// The keys [`EventFilter::parse`] takes.
const EVENT_FILTER_KEYS: [&str; 7] = [
    "type",
    "event",
    "container",
    "image",
    "label",
    "network",
    "volume",
];

impl EventFilter {
    /// The filter of `KEY=VALUE` terms.
    pub fn parse(terms: &[String]) -> Result<Self> {
        let mut f = Self::default();
        for t in terms {
            match t.split_once('=') {
                Some((k, v)) if EVENT_FILTER_KEYS.contains(&k) => {
                    f.terms.entry(k.to_owned()).or_default().push(v.to_owned())
                }
                _ => {
                    return Err(Error::InvalidOption {
                        option: "filter",
                        value: t.clone(),
                        reason: format!(
                            "KEY=VALUE with KEY one of {}",
                            EVENT_FILTER_KEYS.join(", ")
                        )
                        .into(),
                    })
                }
            }
        }
        Ok(f)
    }

    /// Whether event `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.attributes.get(k).map(String::as_str);
        self.terms.iter().all(|(k, vals)| match k.as_str() {
            "label" => vals.iter().all(|v| match v.split_once('=') {
                Some((k, want)) => attr(k) == Some(want),
                None => attr(v).is_some(),
            }),
            key => vals.iter().any(|v| match key {
                "type" => e.kind == *v,
                // docker's: `health_status` stands for every `health_status: STATUS`
                // (as `exec_create`, `exec_start` for theirs with the command).
                "event" => {
                    e.action == *v
                        || ["health_status", "exec_create", "exec_start"].contains(&v.as_str())
                            && e.action
                                .strip_prefix(v.as_str())
                                .is_some_and(|r| r.starts_with(':'))
                }
                "container" => {
                    (e.kind == "container"
                        && (e.id.starts_with(v.as_str()) || attr("name") == Some(v)))
                        || attr("container").is_some_and(|c| c.starts_with(v.as_str()))
                }
                "image" => attr("image") == Some(v),
                "network" => e.kind == "network" && (e.id == *v || attr("name") == Some(v)),
                "volume" => e.kind == "volume" && e.id == *v,
                _ => false,
            }),
        })
    }
}

/// Where a container's monitor records its `start` and `die` events, with the attributes
/// each carries (its name, image and labels), and the `mount` and `unmount` events of its
/// volumes around each run, as docker's daemon does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSink {
    /// The journal's path.
    pub journal: PathBuf,
    /// The attributes of every event.
    pub attributes: BTreeMap<String, String>,
    /// The container's named volumes: (name, path in the container, read-only).
    #[serde(default)]
    pub volumes: Vec<(String, String, bool)>,
}

/// The engine's event journal: what happened to containers, networks and volumes, as
/// docker's `events` reports it, kept in a file so that every process of the engine (the
/// `oci` verbs, the Engine API service, each container's monitor) adds to one history and
/// any reader can follow it.
///
/// The journal is a file of JSON lines. A record is one `write` of one line to the file
/// opened for appending, under an exclusive `flock`, so records of concurrent writers
/// never interleave. At [`JOURNAL_MAX`] bytes the file is renamed to `NAME.1` (the one
/// older generation kept) and a new one begun; a follower holding the old file reads it to
/// its end before it moves to the new one, so nothing is skipped at a rotation.
///
/// ```no_run
/// use oci_rs_runtime::{Event, Journal};
/// # fn demo() -> oci_rs_runtime::Result<()> {
/// let journal = Journal::open("/var/lib/my-tool/events.jsonl".as_ref());
/// journal.record(&Event::new("container", "start", "0123abcd").with("name", "web"))?;
/// for e in journal.read_since(0)? {
///     println!("{} {} {}", e.kind, e.action, e.id);
/// }
/// # Ok(())
/// # }
/// ```

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal at `path` (made at the first record).
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotated(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    /// Appends `event`, rotating the file first when it has reached [`JOURNAL_MAX`].
    pub fn record(&self, event: &Event) -> Result<()> {
        let mut line = serde_json::to_vec(event).map_err(|e| Error::State {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let io = |op: &'static str| {
            let path = self.path.clone();
            move |e: std::io::Error| Error::io(op, &path, e)
        };
        let open = || {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode_0600()
                .open(&self.path)
        };
        // Another writer may rotate the file between the open and the lock: then the file
        // the path names now is opened again.
        let same = |f: &std::fs::File| {
            let (a, b) = (f.metadata(), std::fs::metadata(&self.path));
            matches!((a, b), (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev())
        };
        loop {
            let f = open().map_err(io("open"))?;
            rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| io("lock")(e.into()))?;
            if !same(&f) {
                continue;
            }
            if f.metadata().map_err(io("stat"))?.len() >= JOURNAL_MAX {
                // Still locked: the next writer finds the new file once this one is gone.
                std::fs::rename(&self.path, self.rotated()).map_err(io("rotate"))?;
                continue;
            }
            return (&f).write_all(&line).map_err(io("append to"));
        }
    }

    /// The events recorded at or after `since` (nanoseconds), oldest first, from both
    /// generations. Lines that are not events (a torn or foreign line) are skipped.
    pub fn read_since(&self, since: u64) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        for path in [self.rotated(), self.path.clone()] {
            let f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("open", &path, e)),
            };
            let mut r = std::io::BufReader::new(f);
            while let Some(e) = next_event(&mut r).map_err(|e| Error::io("read", &path, e))? {
                if let Some(e) = e.filter(|e| e.time_nano >= since) {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// docker's `events`: calls `emit` with each event that passes `filter`, first those
    /// recorded from `since` (none of the past without it), then those to come, until
    /// `until` (nanoseconds; forever without it) has passed, or `emit` fails (the stream's
    /// error, then). `alive` is asked between waits (a client still there): when it says
    /// no, the stream ends.
    pub fn stream(
        &self,
        since: Option<u64>,
        until: Option<u64>,
        filter: &EventFilter,
        mut emit: impl FnMut(&Event) -> std::io::Result<()>,
        alive: impl Fn() -> bool,
    ) -> Result<()> {
        let mut send =
            |e: &Event| match !filter.matches(e) || until.is_some_and(|u| e.time_nano > u) {
                true => Ok(()),
                false => emit(e).map_err(|err| Error::io("write", "the event stream", err)),
            };
        // Followed from before the past is read: what is recorded meanwhile comes twice at
        // most, and is dropped the second time.
        let mut follower = self.follow()?;
        let mut seen = std::collections::HashSet::new();
        if let Some(since) = since {
            let past = self.read_since(since)?;
            let start = past.len().saturating_sub(1000);
            for (i, e) in past.iter().enumerate() {
                if i >= start {
                    seen.insert((e.time_nano, e.id.clone(), e.action.clone()));
                }
                send(e)?;
            }
        }
        loop {
            if until.is_some_and(|u| crate::now_ns() > u) || !alive() {
                return Ok(());
            }
            for e in follower.next(Duration::from_millis(500))? {
                if seen.remove(&(e.time_nano, e.id.clone(), e.action.clone())) {
                    continue;
                }
                send(&e)?;
            }
        }
    }

    /// A reader of the events recorded from now on (see [`Follower::next`]).
    pub fn follow(&self) -> Result<Follower> {
        let mut f = Follower {
            journal: self.clone(),
            reader: None,
        };
        f.reopen(true)?;
        Ok(f)
    }
}

/// Reads one line (at most [`LINE_MAX`] of it kept) and parses it: `None` at the end,
/// `Some(None)` for a line that is not an event. A last line without its newline (being
/// written) is not taken: the reader is put back to its start.
fn next_event<R: BufRead + Seek>(r: &mut R) -> std::io::Result<Option<Option<Event>>> {
    let start = r.stream_position()?;
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(LINE_MAX as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if line.len() > LINE_MAX {
            // Too long to be ours: skip to its end.
            let mut rest = Vec::new();
            r.read_until(b'\n', &mut rest)?;
            return Ok(Some(None));
        }
        r.seek(std::io::SeekFrom::Start(start))?;
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&line).ok()))
}

/// Follows a [`Journal`]: each call of [`Follower::next`] returns the events recorded
/// since the last, across rotations.
#[derive(Debug)]
pub struct Follower {
    journal: Journal,
    reader: Option<(std::io::BufReader<std::fs::File>, u64, u64)>,
}

impl Follower {
    /// (Re)opens the journal's current file: at its end (`at_end`) or its start.
    fn reopen(&mut self, at_end: bool) -> Result<()> {
        let path = self.journal.path.clone();
        self.reader = match std::fs::File::open(&path) {
            Ok(f) => {
                let m = f.metadata().map_err(|e| Error::io("stat", &path, e))?;
                let mut r = std::io::BufReader::new(f);
                if at_end {
                    r.seek(std::io::SeekFrom::End(0))
                        .map_err(|e| Error::io("seek", &path, e))?;
                }
                Some((r, m.dev(), m.ino()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        Ok(())
    }

    /// The events recorded since the last call (or since [`Journal::follow`]); waits up to
    /// `wait` for one when there is none yet.
    pub fn next(&mut self, wait: Duration) -> Result<Vec<Event>> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let out = self.drain()?;
            if !out.is_empty() || std::time::Instant::now() >= deadline {
                return Ok(out);
            }
            std::thread::sleep(Duration::from_millis(50).min(wait));
        }
    }

    fn drain(&mut self) -> Result<Vec<Event>> {
        let path = self.journal.path.clone();
        let mut out = Vec::new();
        loop {
            let Some((r, dev, ino)) = self.reader.as_mut() else {
                // No file yet: the first one is read from its start.
                self.reopen(false)?;
                if self.reader.is_none() {
                    return Ok(out);
                }
                continue;
            };
            while let Some(e) = next_event(r).map_err(|e| Error::io("read", &path, e))? {
                out.extend(e);
            }
            // Rotated: what the old file had is read; the new one is read from its start.
            let moved =
                std::fs::metadata(&path).map_or(true, |m| m.ino() != *ino || m.dev() != *dev);
            if !moved {
                return Ok(out);
            }
            self.reopen(false)?;
            if self.reader.is_none() {
                return Ok(out);
            }
        }
    }
}

/// `OpenOptions::mode(0o600)` under a name that reads in a chain.
trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_in_order_and_torn_or_foreign_lines_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(&d.path().join("events.jsonl"));
        j.record(&Event::new("container", "create", "a").with("name", "web"))
            .unwrap();
        // A foreign line, an overlong one, then a torn last line (a writer mid-way).
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap();
        f.write_all(b"not json\n").unwrap();
        f.write_all(&vec![b'x'; LINE_MAX * 2]).unwrap();
        f.write_all(b"\n").unwrap();
        j.record(&Event::new("container", "start", "a")).unwrap();
        f.write_all(b"{\"type\":\"container\"").unwrap();
        let got: Vec<String> = j
            .read_since(0)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(got, ["create", "start"]);
    }

    #[test]
    fn a_follower_sees_new_events_across_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(&d.path().join("events.jsonl"));
        j.record(&Event::new("container", "old", "a")).unwrap();
        let mut f = j.follow().unwrap();
        assert!(
            f.next(Duration::ZERO).unwrap().is_empty(),
            "only what comes after"
        );
        // Fill the file to its cap so that the next record rotates it.
        let pad = "p".repeat(1000);
        let mut n = 0;
        while std::fs::metadata(j.path()).unwrap().len() < JOURNAL_MAX {
            j.record(&Event::new("container", "fill", &pad)).unwrap();
            n += 1;
        }
        j.record(&Event::new("container", "after", "b")).unwrap();
        assert!(j.rotated().exists());
        let mut got = Vec::new();
        while got.len() < n + 1 {
            let more = f.next(Duration::from_secs(1)).unwrap();
            assert!(!more.is_empty(), "stalled at {}", got.len());
            got.extend(more);
        }
        assert_eq!(got.len(), n + 1);
        assert_eq!(got.last().unwrap().action, "after");
        // Both generations are read back; the older one is dropped at the next rotation.
        assert_eq!(j.read_since(0).unwrap().len(), n + 2);
    }

    #[test]
    fn filters_select_as_docker_s() {
        let start = Event::new("container", "start", "abc123")
            .with("name", "web")
            .with("image", "busybox")
            .with("com.docker.compose.project", "p");
        let net = Event::new("network", "connect", "n1")
            .with("name", "front")
            .with("container", "abc123");
        let f = |t: &[&str]| {
            EventFilter::parse(&t.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert!(f(&[]).matches(&start));
        assert!(f(&["container=web"]).matches(&start));
        assert!(f(&["container=abc"]).matches(&start));
        assert!(
            f(&["container=abc"]).matches(&net),
            "a network event names its container"
        );
        assert!(!f(&["container=db"]).matches(&start));
        assert!(f(&["type=container", "event=die", "event=start"]).matches(&start));
        assert!(!f(&["type=network", "event=start"]).matches(&start));
        assert!(f(&["label=com.docker.compose.project=p"]).matches(&start));
        assert!(!f(&["label=com.docker.compose.project=p", "label=other"]).matches(&start));
        assert!(f(&["network=front"]).matches(&net));
        assert!(f(&["image=busybox"]).matches(&start));
        let health = Event::new("container", "health_status: healthy", "abc123");
        assert!(f(&["event=health_status"]).matches(&health));
        assert!(f(&["event=health_status: healthy"]).matches(&health));
        assert!(!f(&["event=health_status: unhealthy"]).matches(&health));
        assert!(!f(&["event=health"]).matches(&health));
        assert!(!f(&["event=start"]).matches(&health));
        assert!(EventFilter::parse(&["colour=red".into()]).is_err());
        assert!(EventFilter::parse(&["type".into()]).is_err());
    }

    #[test]
    fn concurrent_writers_never_interleave() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(&d.path().join("events.jsonl"));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let e = Event::new("container", "exec_start", &format!("{t}-{i}"))
                            .with("pad", "z".repeat(1000));
                        j.record(&e).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = j.read_since(0).unwrap();
        assert_eq!(all.len(), 1600);
        let text = std::fs::read_to_string(j.path()).unwrap();
        assert_eq!(text.lines().count(), 1600);
    }
}
