//! A set of relative paths that holds each path's ancestors too, stored as a tree of
//! components: remembering a path of depth D costs D small nodes, not D whole paths of up to
//! D components each (which made a few KiB of deep layer cost gigabytes).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Component, Path};

/// Paths and all their ancestors.
#[derive(Debug, Default)]
pub(crate) struct PathSet {
    /// (parent node, component) → node; node 0 is the root.
    nodes: HashMap<(u32, OsString), u32>,
}

impl PathSet {
    /// Adds `path` and its ancestors.
    pub(crate) fn insert(&mut self, path: &Path) {
        let mut cur = 0u32;
        for c in path.components() {
            let Component::Normal(c) = c else { continue };
            let next = self.nodes.len() as u32 + 1;
            cur = *self.nodes.entry((cur, c.to_os_string())).or_insert(next);
        }
    }

    /// Whether `path` was added, or is an ancestor of a path that was.
    pub(crate) fn contains(&self, path: &Path) -> bool {
        let mut cur = 0u32;
        let mut any = false;
        for c in path.components() {
            let Component::Normal(c) = c else { continue };
            match self.nodes.get(&(cur, c.to_os_string())) {
                Some(n) => cur = *n,
                None => return false,
            }
            any = true;
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_paths_and_ancestors_only() {
        let mut s = PathSet::default();
        s.insert(Path::new("a/b/c"));
        s.insert(Path::new("a/x"));
        for p in ["a", "a/b", "a/b/c", "a/x"] {
            assert!(s.contains(Path::new(p)), "{p}");
        }
        for p in ["", "b", "a/b/c/d", "a/c", "x"] {
            assert!(!s.contains(Path::new(p)), "{p}");
        }
    }
}
