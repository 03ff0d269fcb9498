//! `export` and `diff` stream: a counting allocator measures the most this test program
//! holds while a tree of 20,000 entries is written as a tar. (Before: the walk collected
//! every entry's metadata, path and xattrs before the first byte was written, about 10 MiB
//! here, 50 MiB for 100,000, growing with the tree.)

#![allow(clippy::unwrap_used)]
#![allow(unsafe_code)]

use oci_rs_layer::{diff, export, DiffOptions};
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
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

const BUDGET: usize = 4 << 20;

#[test]
fn writing_a_large_tree_holds_a_bounded_amount_of_memory() {
    // On the disk, as users run it (not a tmpfs).
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tree = d.path().join("tree");
    for i in 0..40 {
        let dir = tree.join(format!("directory-with-a-longish-name-{i:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for j in 0..500 {
            std::fs::File::create(dir.join(format!("file-number-{j:04}-of-this-directory")))
                .unwrap();
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = DiffOptions::default();
    let t = std::time::Instant::now();
    let mut exported = 0;
    let held = peak_during(|| {
        let (report, _) = rt
            .block_on(export(&tree, tokio::io::sink(), &opts))
            .unwrap();
        exported = report.changed;
    });
    assert_eq!(exported, 40 * 500 + 40);
    assert!(held < BUDGET, "export held {} KiB", held >> 10);
    eprintln!("export held {} KiB, took {:?}", held >> 10, t.elapsed());
    let held = peak_during(|| {
        rt.block_on(diff(None, &tree, tokio::io::sink(), &opts))
            .unwrap();
    });
    assert!(held < BUDGET, "diff held {} KiB", held >> 10);
}
