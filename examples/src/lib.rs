//! Shared pieces of the oci-rs examples and command-line tools.
//!
//! The binaries under `src/bin/` are the examples; this library holds what several of them use,
//! such as the image store verbs of `oci` ([`images`]). The image config → runtime spec step
//! lives in the runtime crate: `oci_rs_runtime::image_spec`.

pub mod build;
pub mod images;
pub mod terminal;
pub mod text;

/// Exit code for a failure of the tool itself (not of the container), as docker and runc use.
pub const EXIT_TOOL_FAILURE: i32 = 125;
