//! Progress events for callers that draw progress bars.

use oci_spec::image::Digest;
use std::sync::Arc;

/// Which way bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the registry.
    Download,
    /// To the registry.
    Upload,
}

/// Bytes moved so far for one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The blob.
    pub digest: Digest,
    /// Bytes transferred so far (skipped and mounted blobs report their full size once).
    pub transferred: u64,
    /// The blob's size.
    pub total: u64,
    /// Download or upload.
    pub direction: Direction,
}

/// The callback type: called often, so it should be cheap.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;
