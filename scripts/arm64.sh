# Sourced by scripts/test.sh and benches/compare.sh (not run).
#
# A foreign-architecture RUN (tests/build.rs): the kernel hands arm64 programs to
# qemu-aarch64-static through binfmt_misc, registered with the F flag (the interpreter opened
# now, so it also runs in a container root that has no qemu), and an arm64 busybox for the
# base image, from Debian's busybox-static:arm64 (unpacked, not installed), kept in a cache
# directory and reused. Root only; without it the test says what is missing and skips.
arm64_cache=${OCI_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oci-rs-tests}/arm64-busybox
arm64_setup() {
  local b=/proc/sys/fs/binfmt_misc e=/proc/sys/fs/binfmt_misc/qemu-aarch64
  mountpoint -q "$b" || mount -t binfmt_misc binfmt_misc "$b" || return 1
  [ "$(cat "$b/status")" = enabled ] || echo 1 > "$b/status"
  # An entry without the F flag (registered by someone else) would fail in the container.
  if [ -e "$e" ] && ! grep -q '^flags:.*F' "$e"; then echo -1 > "$e"; fi
  [ -e "$e" ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > "$b/register" || return 1
  grep -q '^enabled' "$e" || echo 1 > "$e"
  [ -x "$arm64_cache/bin/busybox" ] && return 0
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-cache show busybox-static:arm64 >/dev/null 2>&1 || apt-get update -qq
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root busybox-static:arm64 >/dev/null) &&
    dpkg-deb -x "$tmp"/busybox-static_*_arm64.deb "$tmp/x" &&
    mkdir -p "$arm64_cache/bin" &&
    mv "$tmp/x/bin/busybox" "$arm64_cache/bin/busybox.new" &&
    mv "$arm64_cache/bin/busybox.new" "$arm64_cache/bin/busybox"
  local rc=$?
  rm -rf "$tmp"
  return $rc
}
