#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing, checks formatting and
# lints, then runs every test of the workspace (unit, integration, benches in test mode, doc).
#
#   scripts/test.sh            everything
#   scripts/test.sh -p oci-rs-image   extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# Debian packages the tests use: a real registry, a real busybox, peers for interop, pigz for
# multi-member gzip layers, runtimes and idmap tools for the runtime tests; nftables, iproute2
# (the tests' own namespaces), slirp4netns and debootstrap (the nginx-light image) for the
# network tests; iperf3 for the network benchmarks; libssl-dev and pkg-config for the registry
# client's native-tls feature; xz-utils and bzip2 for the archives the build tests ADD;
# qemu-user-static for the build tests' arm64 RUN (through binfmt_misc, set up below); git
# (and its daemon) for ADD of a git repository; containernetworking-plugins, jq, gcc and
# libc6-dev (static) for the Kubernetes CRI check (scripts/cri.sh) and its stand-in images;
# docker.io for its docker CLI 20.10 (API 1.41) and docker-compose 1.29 (Python), clients of
# `oci system service` (dockerd is never started).
packages=(docker-registry busybox-static git skopeo umoci pigz zstd runc crun containerd podman buildah uidmap apache2-utils openssl nftables iproute2 slirp4netns debootstrap iperf3 libssl-dev pkg-config xz-utils bzip2 qemu-user-static containernetworking-plugins jq gcc libc6-dev curl docker.io docker-compose)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing ${missing[*]} and not root: the tests that need them will say so and skip" >&2
  fi
fi

# A local S3 for the registry's S3 storage tests: moto's server, from PyPI.
if ! command -v moto_server >/dev/null && command -v python3 >/dev/null; then
  echo "test.sh: installing moto[server] (a local S3) with pip"
  python3 -m pip install -q 'moto[server]' || echo "test.sh: pip could not install moto: the S3 tests will say so and skip" >&2
fi

# testcontainers (Python), a client of `oci system service` as test suites use it.
if command -v python3 >/dev/null && ! python3 -c "import testcontainers" 2>/dev/null; then
  echo "test.sh: installing testcontainers with pip"
  python3 -m pip install -q testcontainers || echo "test.sh: pip could not install testcontainers: its test will say so and skip" >&2
fi

# Rootless networking opens /dev/net/tun in the user's namespace; Debian's udev makes it 0666,
# this machine kind has no udev and leaves it 0600.
if [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  chmod 0666 /dev/net/tun
fi

# shellcheck source=scripts/arm64.sh
. scripts/arm64.sh
if [ "$(uname -m)" = x86_64 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  arm64_setup || echo "test.sh: could not set up arm64 RUN (binfmt_misc, busybox-static:arm64): its test will skip" >&2
fi
if [ -x "$arm64_cache/bin/busybox" ]; then
  export OCI_TEST_ARM64_BUSYBOX="$arm64_cache/bin/busybox"
fi

# CI builds once from a clean clone: incremental artefacts would only take disk (4.5 GB). A run
# that fails for want of disk says how much there was.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
target_parent=$(dirname "${CARGO_TARGET_DIR:-$PWD/target}")
echo "test.sh: disk free where the target directory goes: $(df -h --output=avail "$target_parent" 2>/dev/null | tail -1 || echo unknown)"

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "test.sh: cargo test"
cargo test --workspace --all-targets "$@"
echo "test.sh: doc tests"
cargo test --workspace --doc "$@"
echo "test.sh: cargo doc (broken or private links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
# Publishable: each library crate packs (license files, README) and builds from its package
# alone, with its siblings taken from their packages too. (rust-version is kept true by
# clippy's incompatible_msrv above and by examples/tests/publish.rs.)
echo "test.sh: cargo package (the four library crates, verified)"
# cargo unpacks each package it verifies under CARGO_HOME and reuses an unpacked copy of the
# same name and version from an earlier run: drop ours (no registry but the local one of
# `cargo package` has them), so the check builds what is packaged now.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/oci-rs-* "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/-*/oci-rs-*
# The same trap one level down: cargo takes a registry crate of a given name and version to be
# immutable, so in a reused target directory the verification links yesterday's compiled
# oci-rs-image. Drop our crates' compiled artifacts (they rebuild in about a minute).
target_dir=${CARGO_TARGET_DIR:-target}
rm -rf "$target_dir"/debug/.fingerprint/oci-rs-* "$target_dir"/debug/deps/liboci_rs_* "$target_dir"/debug/deps/oci_rs_*
cargo package --workspace --exclude oci-examples --exclude oci-benches --allow-dirty --locked -q
echo "test.sh: oci-rs-image and oci-rs-layer without default features (no zstd)"
cargo test -p oci-rs-image -p oci-rs-layer --no-default-features --lib -q
# The registry client's other TLS choices, against a real TLS registry with a private CA and
# a plain-HTTP server reached over TLS (the default, rustls with ring, ran above).
for tls in native-tls aws-lc-rs; do
  echo "test.sh: oci-rs-registry-client with $tls"
  cargo test -p oci-rs-registry-client --no-default-features --features "$tls" --test distribution --test quirks -q -- tls plain_http
done
cargo test -p oci-rs-registry-client --no-default-features --features aws-lc-rs --lib -q aws_lc_rs
echo "test.sh: oci-rs-registry-client with rustls and no crypto provider"
cargo test -p oci-rs-registry-client --no-default-features --features rustls --lib -q rustls_without_a_provider
# oci-rs-runtime builds for aarch64 (its seccomp compiler's table and audit architecture are
# tested on this machine by the BPF interpreter in its unit tests, for both architectures).
if rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
  echo "test.sh: oci-rs-runtime for aarch64-unknown-linux-gnu (cargo check)"
  # Its engine too, without zstd (a C library, which needs a cross compiler).
  cargo check -p oci-rs-runtime --target aarch64-unknown-linux-gnu --no-default-features --features engine -q
else
  echo "test.sh: skipping the aarch64 check: rustup could not add the target (no network to its servers?)" >&2
fi
# The runtime-tools validation suite against crun, when a built runtime-tools is here (the
# script says how to build one, and skips without it).
echo "test.sh: runtime-tools validation (scripts/conformance.sh)"
scripts/conformance.sh | tail -1
# Kubernetes on our runtime: containerd's CRI with oci-runc as a runtime handler, crictl
# flows and the CRI validation suite against runc and oci-runc (fails when a spec that passes
# with runc fails with ours).
echo "test.sh: Kubernetes CRI (scripts/cri.sh)"
scripts/cri.sh
echo "test.sh: docs of oci-rs-image with its testing feature"
RUSTDOCFLAGS="-D warnings" cargo doc -p oci-rs-image --no-deps --features testing -q
# A short fuzz smoke of every target (fuzz/ is its own workspace, on the stable toolchain with
# RUSTC_BOOTSTRAP=1); FUZZ_SECONDS=0 skips it.
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  echo "test.sh: fuzz smoke, ${FUZZ_SECONDS:-20} s per target"
  fuzz/run.sh "${FUZZ_SECONDS:-20}"
fi
