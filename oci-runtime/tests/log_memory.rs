//! `read_logs` keeps memory flat as the log grows: a counting allocator measures the most
//! this test program holds while reading a 64 MiB log, with and without `--tail`, and with
//! one 64 MiB line that has no newline. (Before: the whole log, or the whole line, in memory.)

#![allow(clippy::unwrap_used)]
#![allow(unsafe_code)]

use oci_rs_runtime::{read_logs, LogLimits, LogQuery, LogStream, LogWriter};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = NOW.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        NOW.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The most held above what was held before, while `f` runs.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed) - base
}

const BUDGET: usize = 4 << 20;

#[test]
fn reading_a_large_log_holds_a_bounded_amount_of_memory() {
    let d = tempfile::tempdir().unwrap();
    let lines = d.path().join("lines.log");
    let long = d.path().join("long.log");
    {
        let limits = LogLimits::default();
        let mut w = LogWriter::open(&lines, limits.clone()).unwrap();
        let chunk: Vec<u8> = b"a line of a container's output\n".repeat(2048);
        for _ in 0..(64 << 20) / chunk.len() {
            w.write(LogStream::Stdout, &chunk);
        }
        let mut w = LogWriter::open(&long, limits).unwrap();
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..1024 {
            w.write(LogStream::Stderr, &chunk);
        }
    }
    for (path, tail) in [
        (&lines, None),
        (&lines, Some(3)),
        (&long, None),
        (&long, Some(1)),
    ] {
        let mut bytes = 0u64;
        let mut last = Vec::new();
        let q = LogQuery {
            tail,
            ..Default::default()
        };
        let peak = peak_during(|| {
            read_logs(path, &q, &mut |_, b| {
                bytes += b.len() as u64;
                last.clear();
                last.extend_from_slice(&b[b.len().saturating_sub(8)..]);
                Ok(())
            })
            .unwrap();
        });
        assert!(
            peak < BUDGET,
            "{} with tail {tail:?}: {peak} bytes held",
            path.display()
        );
        let want = match (path == &lines, tail) {
            (true, None) => (64 << 20) / (31 * 2048) * (31 * 2048),
            (true, Some(n)) => n as u64 * 31,
            (false, _) => 64 << 20,
        };
        assert_eq!(bytes, want, "{} with tail {tail:?}", path.display());
    }
}
