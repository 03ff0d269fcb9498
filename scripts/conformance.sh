#!/usr/bin/env bash
# The OCI runtime-tools validation suite over oci-runc, with crun run on the same programs in
# the same run (alternating, program by program), and the totals of both.
#
#   scripts/conformance.sh [validation/NAME/NAME.t ...]      (default: every program)
#
# Needs root and a built runtime-tools at $RUNTIME_TOOLS (default /var/tmp/runtime-tools);
# without one it says so and exits 0. To build it (Debian's Go 1.19, `golang-go`):
#
#   git clone https://github.com/opencontainers/runtime-tools /var/tmp/runtime-tools
#   cd /var/tmp/runtime-tools && git checkout 260e151   # the last that builds with Go 1.19
#   GOFLAGS=-mod=vendor GOPROXY=off make runtimetest validation-executables
#
# On this machine kind cgroups are hybrid: each program runs under `unshare -m` with
# /sys/fs/cgroup/unified unmounted, for both runtimes, as crun needs. TAP output is kept under
# $OUT (default /var/tmp/oci-rs-conformance/{ours,crun}/NAME.tap).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
RT=${RUNTIME_TOOLS:-/var/tmp/runtime-tools}
if [ ! -x "$RT/runtimetest" ] || ! compgen -G "$RT/validation/*/*.t" >/dev/null; then
  echo "conformance.sh: no built runtime-tools at $RT (set RUNTIME_TOOLS; see this script's header): skipping" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "conformance.sh: the suite needs root: skipping" >&2
  exit 0
fi
command -v crun >/dev/null || { echo "conformance.sh: crun is missing (apt-get install crun)" >&2; exit 1; }
cargo build --release -q -p oci-examples --bin oci-runc || exit 1
OURS=${CARGO_TARGET_DIR:-$PWD/target}/release/oci-runc
OUT=${OUT:-/var/tmp/oci-rs-conformance}
rm -rf "$OUT" && mkdir -p "$OUT/ours" "$OUT/crun"

progs=("$@")
if ((${#progs[@]} == 0)); then
  mapfile -t progs < <(cd "$RT" && ls validation/*/*.t)
fi

# run RUNTIME NAME PROGRAM: the program's TAP into $OUT/NAME/, its exit status into .rc.
run() {
  local runtime=$1 name=$2 prog=$3 base
  base=$(basename "$prog" .t)
  (cd "$RT" && RUNTIME=$runtime timeout 300 unshare -m bash -c \
    'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0"' "./$prog") >"$OUT/$name/$base.tap" 2>&1
  echo $? >"$OUT/$name/$base.rc"
}

count() { # count FILE PATTERN
  grep -cE "$2" "$1" 2>/dev/null || true
}

declare -A ok nok
printf '| program | ours ok | ours not ok | crun ok | crun not ok |\n|---|---|---|---|---|\n'
for prog in "${progs[@]}"; do
  base=$(basename "$prog" .t)
  run "$OURS" ours "$prog"
  run "$(command -v crun)" crun "$prog"
  row=""
  for name in ours crun; do
    f=$OUT/$name/$base.tap
    o=$(count "$f" '^ok ')
    n=$(count "$f" '^not ok ')
    # A program that ends in failure (util.Fatal) with no "not ok" line of its own failed
    # as a whole: one not ok. One that prints no test line is judged by its output: a
    # diagnostic with an "error" (the hook programs print theirs and exit 0) is one not ok,
    # a clean success (the *_fail programs check that the runtime refuses a spec) one ok.
    rc=$(cat "$OUT/$name/$base.rc")
    if [ "$rc" != 0 ] && [ "$n" = 0 ]; then n=1; fi
    if [ "$rc" = 0 ] && [ "$o" = 0 ] && [ "$n" = 0 ]; then
      if grep -q '"error"' "$f"; then n=1; else o=1; fi
    fi
    ok[$name]=$((${ok[$name]:-0} + o))
    nok[$name]=$((${nok[$name]:-0} + n))
    row+=" $o | $n |"
  done
  printf '| %s |%s\n' "$base" "$row"
done
echo
echo "Totals: ours ${ok[ours]} ok / ${nok[ours]} not ok; crun ${ok[crun]} ok / ${nok[crun]} not ok (TAP in $OUT)"
# The bar (issue 18): no more failures and no fewer passes than crun on the same programs in
# the same run. (`poststart` races the container's process against the hook for one file, for
# both runtimes: it can move either count by one from run to run.)
if ((${nok[ours]} > ${nok[crun]})); then
  echo "conformance.sh: more not ok than crun (${nok[ours]} > ${nok[crun]})" >&2
  exit 1
fi
if ((${ok[ours]} < ${ok[crun]})); then
  echo "conformance.sh: fewer ok than crun (${ok[ours]} < ${ok[crun]})" >&2
  exit 1
fi
