//! `oci-runtime`: see the crate README and issue; this crate is being built.
