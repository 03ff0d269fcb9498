#!/usr/bin/env bash
# Side-by-side comparison with the peers, on the same data, on this machine.
#
#   benches/compare.sh [layer|registry|runtime|all]      (default: all; needs root and network for
#                                                 debootstrap the first time)
#
# Data (cached in $BENCH_DIR, default /var/tmp/oci-rs-bench):
#   minbase/          debootstrap --variant=minbase bookworm (about 200 MB, 6,800 entries)
#   minbase.tar.gz    that tree as one gzip layer (pigz)
#   umoci/            an OCI layout with the same tree (tag minbase) and a second layer (tag mod)
#
# Every figure is the median of RUNS runs (default 3) of wall time, with the peak RSS of the
# process tree's largest process (GNU time %M). Results go to stdout as a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
what=${1:-all}
RUNS=${RUNS:-3}
D=${BENCH_DIR:-/var/tmp/oci-rs-bench}
mkdir -p "$D"

need() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
  if ((${#missing[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
need debootstrap pigz umoci skopeo docker-registry time

cargo build --release -q -p oci-examples --bin oci
OCI=${CARGO_TARGET_DIR:-$PWD/target}/release/oci

# measure NAME CMD...: runs CMD RUNS times (after `prep` if defined), prints a table row.
failed=0
measure() {
  local name=$1; shift
  local times=() mems=() bad=0
  for _ in $(seq "$RUNS"); do
    if declare -F prep >/dev/null; then prep; fi
    sync
    if ! /usr/bin/time -f "%e %M" -o "$D/time.out" "$@" >/dev/null 2>"$D/cmd.err"; then
      echo "measure: $name failed: $(tail -3 "$D/cmd.err")" >&2
      bad=1
      break
    fi
    local out
    out=$(tail -1 "$D/time.out")
    times+=("${out% *}"); mems+=("${out#* }")
  done
  if ((bad)); then
    failed=1
    printf '| %s | FAILED (see stderr) | - |\n' "$name"
    echo 0 >"$D/last-time"
    return
  fi
  local t m lo hi
  t=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  lo=$(printf '%s\n' "${times[@]}" | sort -n | head -1)
  hi=$(printf '%s\n' "${times[@]}" | sort -n | tail -1)
  m=$(printf '%s\n' "${mems[@]}" | sort -n | tail -1)
  printf '| %s | %s s (%s–%s) | %s MiB |\n' "$name" "$t" "$lo" "$hi" "$((m / 1024))"
  echo "$t" >"$D/last-time"
}


setup_layer_data() {
  if [ ! -x "$D/minbase/bin/bash" ]; then
    rm -rf "$D/minbase"
    debootstrap --variant=minbase bookworm "$D/minbase" http://deb.debian.org/debian >/dev/null
  fi
  if [ ! -s "$D/minbase.tar.gz" ]; then
    tar --numeric-owner --xattrs -C "$D/minbase" -cf - . | pigz -6 >"$D/minbase.tar.gz"
  fi
  # Twice the tree in one layer, to see memory stay flat as the layer doubles.
  if [ ! -s "$D/double.tar.gz" ]; then
    rm -rf "$D/double" && mkdir -p "$D/double"
    cp -a "$D/minbase" "$D/double/a" && cp -a "$D/minbase" "$D/double/b"
    tar --numeric-owner -C "$D/double" -cf - . | pigz -6 >"$D/double.tar.gz"
    rm -rf "$D/double"
  fi
  if [ ! -f "$D/umoci/index.json" ]; then
    rm -rf "$D/umoci" "$D/ubundle"
    umoci init --layout "$D/umoci"
    umoci new --image "$D/umoci:empty"
    umoci unpack --image "$D/umoci:empty" "$D/ubundle" >/dev/null
    cp -a "$D/minbase/." "$D/ubundle/rootfs/"
    umoci repack --image "$D/umoci:minbase" "$D/ubundle" >/dev/null
    rm -rf "$D/ubundle"
  fi
}

# The change both diff tools see: documentation removed, a tree of binaries added, every
# zoneinfo file touched.
modify() {
  rm -rf "$1/usr/share/doc"
  mkdir -p "$1/opt" && cp -a "$D/minbase/usr/bin" "$1/opt/bin"
  find "$1/usr/share/zoneinfo" -type f -exec touch -d '2026-01-01' {} +
}

layer_bench() {
  setup_layer_data
  local size entries
  size=$(stat -c %s "$D/minbase.tar.gz")
  entries=$(find "$D/minbase" | wc -l)
  echo
  echo "### Layer apply: debootstrap minbase, $((size / 1048576)) MiB gzip, $(du -sm "$D/minbase" | cut -f1) MiB, $entries entries"
  echo
  # Outputs go to a tmpfs: on this VM's ext4 (mounted with discard) removing the previous
  # run's 200 MB tree makes the next run's wall time swing by ±50%, whoever runs.
  mkdir -p "$D/t"
  mountpoint -q "$D/t" || mount -t tmpfs -o size=3g tmpfs "$D/t"
  local out=$D/t/out
  echo "(outputs on tmpfs)"
  echo
  echo "| what | wall (median of $RUNS) | peak RSS |"
  echo "|---|---|---|"
  prep() { rm -rf "$D/t/out" && mkdir -p "$D/t/out"; }
  measure "pigz -dc \| tar -x" bash -c "pigz -dc '$D/minbase.tar.gz' | tar --numeric-owner -xpf - -C '$out'"
  local tar_t; tar_t=$(cat "$D/last-time")
  measure "oci layer apply (ours)" "$OCI" layer apply "$out" "$D/minbase.tar.gz"
  local ours_t; ours_t=$(cat "$D/last-time")
  prep() { rm -rf "$D/t/out"; }
  measure "umoci unpack" umoci unpack --image "$D/umoci:minbase" "$out"
  local umoci_t; umoci_t=$(cat "$D/last-time")
  prep() { rm -rf "$D/t/out" && mkdir -p "$D/t/out"; }
  measure "oci layer apply, layer twice as big" "$OCI" layer apply "$out" "$D/double.tar.gz"
  echo
  echo "Ratios: ours / (pigz|tar) = $(echo "scale=2; $ours_t / $tar_t" | bc), ours / umoci unpack = $(echo "scale=2; $ours_t / $umoci_t" | bc)"

  echo
  echo "### Diff + gzip of two such trees (docs removed, /usr/bin copied to /opt/bin, zoneinfo touched)"
  echo
  echo "| what | wall (median of $RUNS) | peak RSS |"
  echo "|---|---|---|"
  rm -rf "$D/upper" && cp -a "$D/minbase" "$D/upper" && modify "$D/upper"
  prep() { rm -f "$D/diff.tar.gz"; }
  measure "oci layer diff (ours)" "$OCI" layer diff "$D/minbase" "$D/upper" -o "$D/diff.tar.gz"
  local odiff; odiff=$(cat "$D/last-time")
  prep() {
    rm -rf "$D/ubundle"
    umoci unpack --image "$D/umoci:minbase" "$D/ubundle" >/dev/null
    modify "$D/ubundle/rootfs"
  }
  measure "umoci repack" umoci repack --image "$D/umoci:mod" "$D/ubundle"
  local urepack; urepack=$(cat "$D/last-time")
  echo
  echo "Ratio: ours / umoci repack = $(echo "scale=2; $odiff / $urepack" | bc)"
  unset -f prep
  rm -rf "$D/t/out" "$D/ubundle"
  umount "$D/t" 2>/dev/null || true
}

registry_bench() {
  setup_layer_data
  if ! umoci ls --layout "$D/umoci" | grep -qx mod; then
    rm -rf "$D/ubundle"
    umoci unpack --image "$D/umoci:minbase" "$D/ubundle" >/dev/null
    modify "$D/ubundle/rootfs"
    umoci repack --image "$D/umoci:mod" "$D/ubundle" >/dev/null
    rm -rf "$D/ubundle"
  fi
  local port reg
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  reg=$D/registry
  rm -rf "$reg" && mkdir -p "$reg"
  cat >"$reg/config.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $reg/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
EOF
  docker-registry serve "$reg/config.yml" >"$reg/log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  local r=127.0.0.1:$port
  skopeo copy --dest-tls-verify=false "oci:$D/umoci:mod" "docker://$r/bench/src:1" >/dev/null
  local size
  size=$(skopeo inspect --tls-verify=false --raw "docker://$r/bench/src:1" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(l["size"] for l in m["layers"]))')
  echo
  echo "### Registry: two-layer image, $((size / 1048576)) MiB compressed, local CNCF distribution"
  echo
  echo "| what | wall (median of $RUNS) | peak RSS |"
  echo "|---|---|---|"
  prep() { rm -rf "$D/pulled"; }
  measure "skopeo copy docker:// → oci:" skopeo copy --src-tls-verify=false "docker://$r/bench/src:1" "oci:$D/pulled:x"
  local sp; sp=$(cat "$D/last-time")
  measure "oci pull (ours)" "$OCI" -q --data-dir "$D/pulled" pull "$r/bench/src:1"
  local op; op=$(cat "$D/last-time")
  # skopeo remembers where blobs were seen (its blob-info cache) and would mount them from the
  # first repository instead of uploading: forget that before each push, so both upload.
  prep() { rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb; }
  measure "skopeo copy oci: → docker://" bash -c "skopeo copy --dest-tls-verify=false 'oci:$D/umoci:mod' \"docker://$r/bench/skopeo\$RANDOM\$RANDOM:1\""
  local spu; spu=$(cat "$D/last-time")
  rm -rf "$D/pulled" && "$OCI" -q --data-dir "$D/pulled" pull "$r/bench/src:1" >/dev/null
  measure "oci push (ours)" bash -c "n=\$RANDOM\$RANDOM; '$OCI' -q --data-dir '$D/pulled' tag '$r/bench/src:1' '$r/bench/ours'\$n':1' && '$OCI' -q --data-dir '$D/pulled' push '$r/bench/ours'\$n':1'"
  local opu; opu=$(cat "$D/last-time")
  # Pull + run from an empty store to the container's exit, against containerd (which unpacks
  # on pull) and its runc shim.
  need containerd
  local C=$D/containerd
  ctr_start() {
    [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
    rm -rf "$C" && mkdir -p "$C"
    printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\n[grpc]\n  address = "%s/sock"\n' "$C" "$C" "$C" >"$C/config.toml"
    containerd --config "$C/config.toml" >"$C/log" 2>&1 &
    cpid=$!
    for _ in $(seq 100); do ctr -a "$C/sock" version >/dev/null 2>&1 && break; sleep 0.05; done
  }
  prep() { ctr_start; }
  measure "ctr images pull + ctr run /bin/true" bash -c "ctr -a '$C/sock' images pull --plain-http '$r/bench/src:1' >/dev/null && ctr -a '$C/sock' run --rm '$r/bench/src:1' c\$RANDOM /bin/true"
  local cr; cr=$(cat "$D/last-time")
  prep() { rm -rf "$D/runner"; }
  measure "oci run --rm /bin/true (ours, empty store)" "$OCI" -q --data-dir "$D/runner" run --rm "$r/bench/src:1" /bin/true
  local orun; orun=$(cat "$D/last-time")
  kill "$cpid" 2>/dev/null || true
  unset -f prep
  kill "$pid"
  echo
  echo "Ratio: pull+run ours / ctr = $(echo "scale=2; $orun / $cr" | bc)"
  echo
  echo "Ratios: pull ours / skopeo = $(echo "scale=2; $op / $sp" | bc), push ours / skopeo = $(echo "scale=2; $opu / $spu" | bc)"
}

runtime_bench() {
  need runc crun busybox-static
  cargo build --release -q -p oci-examples --bin oci-runc
  local RUNC=${CARGO_TARGET_DIR:-$PWD/target}/release/oci-runc
  local B=$D/rtbundle N=${N:-20}
  rm -rf "$B" && mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/dev" "$B/rootfs/sys"
  cp /bin/busybox "$B/rootfs/bin/busybox" && ln -s busybox "$B/rootfs/bin/true"
  (cd "$B" && runc spec)
  python3 - "$B/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
c["linux"]["namespaces"] = [{"type": t} for t in ["pid", "network", "ipc", "uts", "mount"]]
json.dump(c, open(p, "w"))
PY
  echo
  echo "### Container start-to-exit: /bin/true in a busybox rootfs (pid, net, ipc, uts, mount namespaces), $N runs per figure"
  echo
  echo "| what | wall for $N runs (median of $RUNS) | peak RSS |"
  echo "|---|---|---|"
  measure "runc run" bash -c "for i in \$(seq $N); do runc --root '$D/st-runc' run --bundle '$B' r\$i >/dev/null || exit 1; done"
  local rt; rt=$(cat "$D/last-time")
  # crun needs the v2 hierarchy out of the way on this hybrid-cgroup kernel.
  measure "crun run" unshare -m bash -c "umount /sys/fs/cgroup/unified 2>/dev/null; for i in \$(seq $N); do crun --root '$D/st-crun' run --bundle '$B' c\$i >/dev/null || exit 1; done"
  local ct; ct=$(cat "$D/last-time")
  measure "oci-runc run (ours, CLI)" bash -c "for i in \$(seq $N); do '$RUNC' --root '$D/st-ours' run --bundle '$B' o\$i >/dev/null || exit 1; done"
  local ot; ot=$(cat "$D/last-time")
  echo
  echo "Ratios: ours (CLI) / crun = $(echo "scale=2; $ot / $ct" | bc), ours (CLI) / runc = $(echo "scale=2; $ot / $rt" | bc)"
  unset -f prep
}

echo "## $(date -u +%F) on $(nproc) cores, $(uname -r)"
case $what in
  layer) layer_bench ;;
  registry) registry_bench ;;
  runtime) runtime_bench ;;
  all) layer_bench; registry_bench; runtime_bench ;;
  *) echo "usage: $0 [layer|registry|runtime|all]" >&2; exit 2 ;;
esac
if ((failed)); then
  echo "compare.sh: some measurements FAILED; the table above is incomplete" >&2
  exit 1
fi
