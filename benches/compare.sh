#!/usr/bin/env bash
# Side-by-side comparison with the peers, on the same data, on this machine.
#
#   benches/compare.sh [layer|registry|registry-server|runtime|runc-calls|containers|verbs|network|build|cache|multiplatform|export|all]      (default: all; needs root and network for
#                                                 debootstrap the first time)
#
# Data (cached in $BENCH_DIR, default /var/tmp/oci-rs-bench):
#   minbase/          debootstrap --variant=minbase bookworm (about 200 MB, 6,800 entries)
#   minbase.tar.gz    that tree as one gzip layer (pigz)
#   big.bin           20 MB of random bytes, made once
#   umoci/            an OCI layout with the same tree (tag minbase) and a second layer (tag
#                     layer2): big.bin, 2,000 small files, /usr/share/doc deleted
#   oci-client/       a scratch cargo project outside the repository that pulls with the
#                     oci-client crate (benches/peers/oci-client-pull.rs), built once
#
# Contenders alternate: each of RUNS rounds (default 3) runs every contender of a table once,
# in turn, so that a slow minute of the machine hits all of them alike. Every figure is the
# median of the rounds' wall times, with min–max and the peak RSS of the largest process
# (GNU time %M). Results go to stdout as Markdown tables.
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

# shellcheck source=benches/fixtures.sh
. benches/fixtures.sh

cargo build --release -q -p oci-examples --bin oci
OCI=${CARGO_TARGET_DIR:-$PWD/target}/release/oci

# race LABEL PREP CMD [LABEL PREP CMD]...: RUNS rounds; in each, every contender runs once in
# the order given, after its PREP (a shell command, or "" for none). Prints a table row per
# contender and leaves its median in MED[LABEL]. A contender that fails stops the table and
# makes the script exit non-zero at the end.
failed=0
declare -A MED
race() {
  local n=$(($# / 3)) args=("$@") i run
  local -A times mems
  for run in $(seq "$RUNS"); do
    for ((i = 0; i < n; i++)); do
      local label=${args[3 * i]} prep=${args[3 * i + 1]} cmd=${args[3 * i + 2]}
      [ -n "$prep" ] && bash -c "$prep" >/dev/null
      sync
      if ! /usr/bin/time -f "%e %M" -o "$D/time.out" bash -c "$cmd" >/dev/null 2>"$D/cmd.err"; then
        echo "race: $label failed: $(tail -3 "$D/cmd.err")" >&2
        printf '| %s | FAILED (see stderr) | - |\n' "$label"
        failed=1
        MED[$label]=0
        return
      fi
      local out
      out=$(tail -1 "$D/time.out")
      times[$label]+="${out% *} "
      mems[$label]+="${out#* } "
    done
  done
  for ((i = 0; i < n; i++)); do
    local label=${args[3 * i]} sorted t lo hi m
    sorted=$(tr ' ' '\n' <<<"${times[$label]}" | sed '/^$/d' | sort -n)
    t=$(sed -n "$(((RUNS + 1) / 2))p" <<<"$sorted")
    lo=$(head -1 <<<"$sorted")
    hi=$(tail -1 <<<"$sorted")
    m=$(tr ' ' '\n' <<<"${mems[$label]}" | sed '/^$/d' | sort -n | tail -1)
    printf '| %s | %s s (%s–%s) | %s MiB |\n' "$label" "$t" "$lo" "$hi" "$((m / 1024))"
    MED[$label]=$t
  done
}

# ratio A B: MED[A] / MED[B] to two places.
ratio() {
  local a=${MED[$1]:-0} b=${MED[$2]:-0}
  if [ "$b" = 0 ] || [ "$a" = 0 ]; then echo "n/a"; else echo "scale=2; $a / $b" | bc; fi
}

export D OCI

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
  if [ "$(stat -c %s "$D/big.bin" 2>/dev/null)" != 20000000 ]; then
    head -c 20000000 /dev/urandom >"$D/big.bin"
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
  if ! umoci ls --layout "$D/umoci" | grep -qx layer2; then
    rm -rf "$D/ubundle"
    umoci unpack --image "$D/umoci:minbase" "$D/ubundle" >/dev/null
    second_layer "$D/ubundle/rootfs"
    umoci repack --image "$D/umoci:layer2" "$D/ubundle" >/dev/null
    rm -rf "$D/ubundle"
  fi
}

# The second layer, as issue 7 describes it: a 20 MB file (random bytes, so it stays 20 MB
# compressed), 2,000 small files, and deletions (the documentation, about 700 entries).
second_layer() {
  rm -rf "$1/usr/share/doc"
  mkdir -p "$1/opt/small"
  cp "$D/big.bin" "$1/opt/big.bin"
  local i
  for i in $(seq 2000); do
    printf 'small file %d of the second layer\n%0*d\n' "$i" $((i % 900 + 10)) "$i" >"$1/opt/small/f$i"
  done
}
export -f second_layer

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
  echo "(outputs on tmpfs; contenders alternate)"
  echo
  echo "| what | wall (median of $RUNS) | peak RSS |"
  echo "|---|---|---|"
  local fresh="rm -rf '$out' && mkdir -p '$out'"
  race \
    "pigz -dc \| tar -x" "$fresh" "pigz -dc '$D/minbase.tar.gz' | tar --numeric-owner -xpf - -C '$out'" \
    "oci layer apply (ours)" "$fresh" "'$OCI' layer apply '$out' '$D/minbase.tar.gz'" \
    "umoci unpack" "rm -rf '$out'" "umoci unpack --image '$D/umoci:minbase' '$out'"
  race "oci layer apply, layer twice as big" "$fresh" "'$OCI' layer apply '$out' '$D/double.tar.gz'"
  echo
  echo "Ratios: ours / (pigz|tar) = $(ratio "oci layer apply (ours)" "pigz -dc \| tar -x"), ours / umoci unpack = $(ratio "oci layer apply (ours)" "umoci unpack")"

  echo
  echo "### Diff + gzip: minbase against minbase with the second layer's changes (20 MB file, 2,000 small files, /usr/share/doc deleted)"
  echo
  echo "| what | wall (median of $RUNS) | peak RSS |"
  echo "|---|---|---|"
  rm -rf "$D/upper" && cp -a "$D/minbase" "$D/upper" && second_layer "$D/upper"
  race \
    "oci layer diff (ours)" "rm -f '$D/diff.tar.gz'" "'$OCI' layer diff '$D/minbase' '$D/upper' -o '$D/diff.tar.gz'" \
    "umoci repack" "rm -rf '$D/ubundle' && umoci unpack --image '$D/umoci:minbase' '$D/ubundle' && second_layer '$D/ubundle/rootfs'" "umoci repack --image '$D/umoci:repacked' '$D/ubundle'"
  echo
  echo "Ratio: ours / umoci repack = $(ratio "oci layer diff (ours)" "umoci repack")"
  rm -rf "$D/t/out" "$D/ubundle" "$D/upper"
  umount "$D/t" 2>/dev/null || true
}

# Builds (once) the scratch project that pulls with the oci-client crate, outside the
# repository, and prints the binary's path.
oci_client_bin() {
  local P=$D/oci-client
  mkdir -p "$P/src"
  cp benches/peers/oci-client-pull.rs "$P/src/main.rs"
  cat >"$P/Cargo.toml" <<'EOF'
[package]
name = "oci-client-pull"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
oci-client = { version = "0.17", default-features = false, features = ["rustls-tls"] }
tokio = { version = "1", features = ["rt-multi-thread", "macros", "fs"] }
futures-util = "0.3"
serde_json = "1"

[workspace]
EOF
  (cd "$P" && CARGO_TARGET_DIR="$P/target" cargo build --release -q) >&2
  echo "$P/target/release/oci-client-pull"
}

# start_registry DIR: CNCF distribution (Debian's docker-registry) on a free loopback port,
# its storage in DIR (emptied); sets REG (127.0.0.1:PORT) and REG_PID.
start_registry() {
  local reg=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$reg" && mkdir -p "$reg"
  cat >"$reg/config.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $reg/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
EOF
  docker-registry serve "$reg/config.yml" >"$reg/log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  REG=127.0.0.1:$port
}

registry_bench() {
  setup_layer_data
  local OCLIENT
  OCLIENT=$(oci_client_bin)
  start_registry "$D/registry"
  local pid=$REG_PID r=$REG
  skopeo copy --dest-tls-verify=false "oci:$D/umoci:layer2" "docker://$r/bench/src:1" >/dev/null
  local raw size layers
  raw=$(skopeo inspect --tls-verify=false --raw "docker://$r/bench/src:1")
  size=$(python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))' <<<"$raw")
  layers=$(python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))' <<<"$raw")
  echo
  echo "### Registry: two-layer image (minbase + the second layer), $((size / 1000000)) MB compressed, local CNCF distribution"
  echo
  echo "(contenders alternate; stores on the VM's disk; the curl row is the floor: both layers fetched at once to /dev/null)"
  echo
  echo "| what | wall (median of $RUNS) | peak RSS |"
  echo "|---|---|---|"
  local curls="" tofiles="" l
  for l in $layers; do
    curls+="curl -fs -o /dev/null http://$r/v2/bench/src/blobs/$l & "
    tofiles+="curl -fs -o '$D/p-curl/${l#sha256:}' http://$r/v2/bench/src/blobs/$l & "
  done
  race \
    "curl, layers to /dev/null (floor)" "" "${curls} wait" \
    "curl, layers to files at once, then openssl dgst -sha256 of them (the two halves)" "rm -rf '$D/p-curl' && mkdir -p '$D/p-curl'" "${tofiles} wait; openssl dgst -sha256 '$D'/p-curl/* >/dev/null" \
    "skopeo copy docker:// → oci:" "rm -rf '$D/p-skopeo'" "skopeo copy --src-tls-verify=false docker://$r/bench/src:1 'oci:$D/p-skopeo:x'" \
    "oci-client crate (pull_blob to files)" "rm -rf '$D/p-oci-client'" "'$OCLIENT' $r/bench/src:1 '$D/p-oci-client'" \
    "oci pull (ours)" "rm -rf '$D/p-ours'" "'$OCI' -q --data-dir '$D/p-ours' pull $r/bench/src:1"
  # skopeo remembers where blobs were seen (its blob-info cache) and would mount them from the
  # first repository instead of uploading: forget that before each push, so both upload.
  rm -rf "$D/pushsrc" && "$OCI" -q --data-dir "$D/pushsrc" pull "$r/bench/src:1" >/dev/null
  # The push floor: curl uploading both layers at once (POST, then one PUT with the bytes), no
  # client-side work at all; the registry's own receiving, hashing and writing is what is left.
  cat >"$D/push-floor.sh" <<EOF
repo=bench/floor\$RANDOM\$RANDOM
for d in $layers; do
  (
    loc=\$(curl -fsS -X POST -D - -o /dev/null "http://$r/v2/\$repo/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower(\$1)=="location" {print \$2}')
    case \$loc in http*) ;; *) loc="http://$r\$loc" ;; esac
    case \$loc in *\?*) sep='&' ;; *) sep='?' ;; esac
    curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$D/pushsrc/images/blobs/sha256/\${d#sha256:}" "\$loc\${sep}digest=\$d" -o /dev/null
  ) &
done
wait
EOF
  race \
    "curl, both layers uploaded at once (floor)" "" "bash '$D/push-floor.sh'" \
    "skopeo copy oci: → docker://" "rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb" "skopeo copy --dest-tls-verify=false 'oci:$D/umoci:layer2' docker://$r/bench/skopeo\$RANDOM\$RANDOM:1" \
    "oci push (ours)" "" "n=\$RANDOM\$RANDOM; '$OCI' -q --data-dir '$D/pushsrc' tag $r/bench/src:1 $r/bench/ours\$n:1 && '$OCI' -q --data-dir '$D/pushsrc' push $r/bench/ours\$n:1"
  # Pull + run from an empty store to the container's exit, against containerd (which unpacks
  # on pull) and its runc shim; containerd restarts from nothing before each of its rounds.
  need containerd
  local C=$D/containerd
  cat >"$D/ctr-start.sh" <<EOF
pkill -f "containerd --config $C/config.toml" && sleep 0.2
rm -rf "$C" && mkdir -p "$C"
printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\n[grpc]\n  address = "%s/sock"\n' "$C" "$C" "$C" >"$C/config.toml"
setsid containerd --config "$C/config.toml" >"$C/log" 2>&1 </dev/null &
for _ in \$(seq 100); do ctr -a "$C/sock" version >/dev/null 2>&1 && break; sleep 0.05; done
EOF
  # podman as ../shared/PEERS.md runs it, with its default overlay driver; its store emptied
  # before each of its rounds.
  need podman runc
  local PD=$D/podman-first
  local P="podman --root $PD/root --runroot $PD/run --storage-driver overlay --runtime runc --cgroup-manager cgroupfs --events-backend file"
  local largest
  largest=$(ls -S "$D/pushsrc/images/blobs/sha256/" | head -1)
  echo
  echo "### First run of the two-layer image from an empty store: pull, unpack, start, exit"
  echo
  echo "(contenders alternate; on the VM's ext4 disk; the floor is the largest layer alone through pigz and tar onto the same disk)"
  echo
  echo "| what | wall (median of $RUNS) | peak RSS |"
  echo "|---|---|---|"
  race \
    "pigz -dc | tar -x of the largest layer (floor)" "rm -rf '$D/floor' && mkdir -p '$D/floor'" "pigz -dc '$D/pushsrc/images/blobs/sha256/$largest' | tar -x -C '$D/floor'" \
    "ctr images pull + ctr run /bin/true" "bash '$D/ctr-start.sh'" "ctr -a '$C/sock' images pull --plain-http $r/bench/src:1 >/dev/null && ctr -a '$C/sock' run --rm $r/bench/src:1 c\$RANDOM /bin/true" \
    "podman run --rm /bin/true (pull included)" "awk -v c='$PD/' 'index(\$2, c) == 1 {print \$2}' /proc/mounts | sort -r | xargs -r umount -l; rm -rf '$PD'" "$P run --rm --tls-verify=false --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none $r/bench/src:1 /bin/true" \
    "oci run --rm /bin/true (ours, empty store)" "rm -rf '$D/runner'" "'$OCI' -q --data-dir '$D/runner' run --rm --network none $r/bench/src:1 /bin/true"
  awk -v c="$PD/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  rm -rf "$PD" "$D/floor" "$D/p-curl"
  pkill -f "containerd --config $C/config.toml" || true
  kill "$pid"
  rm -rf "$D/p-skopeo" "$D/p-oci-client" "$D/p-ours" "$D/pushsrc" "$D/runner" "$C" "$reg"
  echo
  echo "Ratios: pull ours / skopeo = $(ratio "oci pull (ours)" "skopeo copy docker:// → oci:"), pull ours / oci-client = $(ratio "oci pull (ours)" "oci-client crate (pull_blob to files)"), push ours / skopeo = $(ratio "oci push (ours)" "skopeo copy oci: → docker://"), push ours / curl floor = $(ratio "oci push (ours)" "curl, both layers uploaded at once (floor)"), pull ours / (curl to files + openssl) = $(ratio "oci pull (ours)" "curl, layers to files at once, then openssl dgst -sha256 of them (the two halves)")"
  echo
  echo "First run: ours / floor = $(ratio "oci run --rm /bin/true (ours, empty store)" "pigz -dc | tar -x of the largest layer (floor)"), ours / ctr = $(ratio "oci run --rm /bin/true (ours, empty store)" "ctr images pull + ctr run /bin/true"), ours / podman = $(ratio "oci run --rm /bin/true (ours, empty store)" "podman run --rm /bin/true (pull included)")"
}

# start_ours DIR: `oci registry serve` (ours) on a free loopback port, its storage in DIR
# (emptied); sets OURS (127.0.0.1:PORT) and OURS_PID.
start_ours() {
  local reg=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$reg" && mkdir -p "$reg"
  "$OCI" registry serve --addr "127.0.0.1:$port" --storage "$reg/data" >"$reg/log" 2>&1 &
  OURS_PID=$!
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  OURS=127.0.0.1:$port
}

# Our registry against CNCF distribution, the same client (`oci push`/`oci pull`) against
# both, stores on the same disk; then 100 concurrent pulls of one blob from each.
registry_server_bench() {
  setup_layer_data
  start_registry "$D/reg-cncf"
  local cncf=$REG cncf_pid=$REG_PID
  start_ours "$D/reg-ours"
  local ours=$OURS ours_pid=$OURS_PID
  rm -rf "$D/rs-src"
  skopeo copy -q --dest-tls-verify=false "oci:$D/umoci:layer2" "docker://$cncf/bench/src:1" >/dev/null
  "$OCI" -q --data-dir "$D/rs-src" pull "$cncf/bench/src:1" >/dev/null
  local raw size
  raw=$(skopeo inspect --tls-verify=false --raw "docker://$cncf/bench/src:1")
  size=$(python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))' <<<"$raw")
  echo
  echo "### Registry server: push and pull of the two-layer image ($((size / 1000000)) MB compressed), ours against CNCF distribution $(dpkg-query -W -f='${Version}' docker-registry)"
  echo
  echo "(the same client, \`oci push\` and \`oci pull\` (release), against each; both registries' storage on the VM's disk; a new repository per push so every blob is uploaded; contenders alternate)"
  echo
  echo "| what | wall (median of $RUNS) | peak RSS of the client |"
  echo "|---|---|---|"
  "$OCI" -q --data-dir "$D/rs-src" tag "$cncf/bench/src:1" "$ours/bench/src:1"
  "$OCI" -q --data-dir "$D/rs-src" push "$ours/bench/src:1" >/dev/null
  race \
    "push to CNCF distribution" "" "n=\$RANDOM\$RANDOM; '$OCI' -q --data-dir '$D/rs-src' tag $cncf/bench/src:1 $cncf/bench/p\$n:1 && '$OCI' -q --data-dir '$D/rs-src' push $cncf/bench/p\$n:1" \
    "push to ours" "" "n=\$RANDOM\$RANDOM; '$OCI' -q --data-dir '$D/rs-src' tag $cncf/bench/src:1 $ours/bench/p\$n:1 && '$OCI' -q --data-dir '$D/rs-src' push $ours/bench/p\$n:1"
  local layers curl_cncf="" curl_ours="" l
  layers=$(python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))' <<<"$raw")
  for l in $layers; do
    curl_cncf+="curl -fs -o /dev/null http://$cncf/v2/bench/src/blobs/$l & "
    curl_ours+="curl -fs -o /dev/null http://$ours/v2/bench/src/blobs/$l & "
  done
  race \
    "pull from CNCF distribution" "rm -rf '$D/rs-pull'" "'$OCI' -q --data-dir '$D/rs-pull' pull $cncf/bench/src:1" \
    "pull from ours" "rm -rf '$D/rs-pull'" "'$OCI' -q --data-dir '$D/rs-pull' pull $ours/bench/src:1" \
    "the layers to /dev/null with curl, from CNCF distribution" "" "${curl_cncf} wait" \
    "the layers to /dev/null with curl, from ours" "" "${curl_ours} wait"
  echo
  echo "Ratios: push ours / distribution = $(ratio "push to ours" "push to CNCF distribution"), pull ours / distribution = $(ratio "pull from ours" "pull from CNCF distribution"), layers by curl ours / distribution = $(ratio "the layers to /dev/null with curl, from ours" "the layers to /dev/null with curl, from CNCF distribution")"
  # 100 concurrent GETs of the second layer's blob (about 20 MB: the random file).
  local blob
  blob=$(python3 -c 'import json,sys; l=json.load(sys.stdin)["layers"]; print(min(l, key=lambda x: abs(x["size"]-20_000_000))["digest"])' <<<"$raw")
  local bsize
  bsize=$(python3 -c 'import json,sys; l=json.load(sys.stdin)["layers"]; print([x["size"] for x in l if x["digest"]=="'"$blob"'"][0])' <<<"$raw")
  echo
  echo "### 100 concurrent pulls of one $((bsize / 1000000)) MB blob (curl to /dev/null, loopback)"
  echo
  echo "| registry | wall | throughput | p50 / p99 latency | server RSS before → after |"
  echo "|---|---|---|---|---|"
  local round name addr pid
  for round in $(seq "$RUNS"); do
    for name in cncf ours; do
      if [ $name = cncf ]; then addr=$cncf pid=$cncf_pid; else addr=$ours pid=$ours_pid; fi
      local before after t0 t1
      before=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
      t0=$(date +%s.%N)
      seq 100 | xargs -P 100 -I{} curl -fs -o /dev/null -w '%{time_total}\n' "http://$addr/v2/bench/src/blobs/$blob" >"$D/rs-lat" || true
      t1=$(date +%s.%N)
      after=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
      python3 - "$D/rs-lat" "$t0" "$t1" "$bsize" "$before" "$after" "$name" <<'PY'
import sys, statistics
lat = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
t0, t1, size = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
wall = t1 - t0
n = len(lat)
p = lambda q: lat[min(n - 1, int(q * n))] if n else float("nan")
name = "CNCF distribution" if sys.argv[7] == "cncf" else "ours"
print(f"| {name} | {wall:.2f} s ({n} of 100 done) | {n * size / wall / 1e9:.2f} GB/s | {p(0.5):.2f} / {p(0.99):.2f} s | {int(sys.argv[5]) // 1024} → {int(sys.argv[6]) // 1024} MiB (peak) |")
PY
    done
  done
  kill "$cncf_pid" "$ours_pid"
  registry_s3_bench
  rm -rf "$D/rs-src" "$D/rs-pull" "$D/reg-cncf" "$D/reg-ours" "$D/rs-lat"
}

# The same push and pull with both registries storing in S3: a local moto server (a
# Python S3 emulator, the floor of both), one bucket each.
registry_s3_bench() {
  if ! command -v moto_server >/dev/null; then
    echo; echo "(no moto_server: the S3 comparison is skipped; pip install 'moto[server]')"
    return
  fi
  local port cport oport
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  moto_server -p "$port" >/dev/null 2>&1 &
  local moto_pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs -X PUT "http://127.0.0.1:$port/cncf" >/dev/null
  curl -fs -X PUT "http://127.0.0.1:$port/ours" >/dev/null
  cport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  oport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$D/reg-cncf-s3" && mkdir -p "$D/reg-cncf-s3"
  cat >"$D/reg-cncf-s3/config.yml" <<EOF
version: 0.1
log: {level: error}
storage:
  s3: {accesskey: test, secretkey: test, region: us-east-1, regionendpoint: "http://127.0.0.1:$port", bucket: cncf, secure: false, v4auth: true, rootdirectory: /registry}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$cport}
EOF
  # Its AWS SDK fails on a custom CA bundle in the environment (AWS_CA_BUNDLE): none here.
  env -u AWS_CA_BUNDLE docker-registry serve "$D/reg-cncf-s3/config.yml" >"$D/reg-cncf-s3/log" 2>&1 &
  local cpid=$!
  AWS_ENDPOINT=http://127.0.0.1:$port AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
    "$OCI" registry serve --addr "127.0.0.1:$oport" --storage s3://ours/registry >/dev/null 2>&1 &
  local opid=$!
  for a in $cport $oport; do
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$a/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  local cs=127.0.0.1:$cport os=127.0.0.1:$oport
  echo
  echo "### The same over S3: both registries storing in a local moto server (one bucket each)"
  echo
  echo "| what | wall (median of $RUNS) | peak RSS of the client |"
  echo "|---|---|---|"
  race \
    "push to CNCF distribution (S3)" "" "n=\$RANDOM\$RANDOM; '$OCI' -q --data-dir '$D/rs-src' tag $cncf/bench/src:1 $cs/bench/p\$n:1 && '$OCI' -q --data-dir '$D/rs-src' push $cs/bench/p\$n:1" \
    "push to ours (S3)" "" "n=\$RANDOM\$RANDOM; '$OCI' -q --data-dir '$D/rs-src' tag $cncf/bench/src:1 $os/bench/p\$n:1 && '$OCI' -q --data-dir '$D/rs-src' push $os/bench/p\$n:1"
  "$OCI" -q --data-dir "$D/rs-src" tag "$cncf/bench/src:1" "$cs/bench/src:1"
  "$OCI" -q --data-dir "$D/rs-src" push "$cs/bench/src:1" >/dev/null
  "$OCI" -q --data-dir "$D/rs-src" tag "$cncf/bench/src:1" "$os/bench/src:1"
  "$OCI" -q --data-dir "$D/rs-src" push "$os/bench/src:1" >/dev/null
  race \
    "pull from CNCF distribution (S3)" "rm -rf '$D/rs-pull'" "'$OCI' -q --data-dir '$D/rs-pull' pull $cs/bench/src:1" \
    "pull from ours (S3)" "rm -rf '$D/rs-pull'" "'$OCI' -q --data-dir '$D/rs-pull' pull $os/bench/src:1"
  echo
  echo "Ratios over S3: push ours / distribution = $(ratio "push to ours (S3)" "push to CNCF distribution (S3)"), pull ours / distribution = $(ratio "pull from ours (S3)" "pull from CNCF distribution (S3)")"
  kill "$cpid" "$opid" "$moto_pid" 2>/dev/null || true
  rm -rf "$D/reg-cncf-s3"
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
  # crun needs the v2 hierarchy out of the way on this hybrid-cgroup kernel.
  cat >"$D/crun-loop.sh" <<EOF
umount /sys/fs/cgroup/unified 2>/dev/null
for i in \$(seq $N); do crun --root '$D/st-crun' run --bundle '$B' c\$i >/dev/null || exit 1; done
EOF
  echo
  echo "### Container start-to-exit: /bin/true in a busybox rootfs (pid, net, ipc, uts, mount namespaces), $N runs per figure"
  echo
  echo "(contenders alternate)"
  echo
  echo "| what | wall for $N runs (median of $RUNS) | peak RSS |"
  echo "|---|---|---|"
  race \
    "runc run" "" "for i in \$(seq $N); do runc --root '$D/st-runc' run --bundle '$B' r\$i >/dev/null || exit 1; done" \
    "crun run" "" "unshare -m bash '$D/crun-loop.sh'" \
    "oci-runc run (ours, CLI)" "" "for i in \$(seq $N); do '$RUNC' --root '$D/st-ours' run --bundle '$B' o\$i >/dev/null || exit 1; done"
  echo
  echo "Ratios: ours (CLI) / crun = $(ratio "oci-runc run (ours, CLI)" "crun run"), ours (CLI) / runc = $(ratio "oci-runc run (ours, CLI)" "runc run")"
}

# Our store and podman's under $1, afresh (what an earlier run left mounted unmounted), each
# holding the same busybox image (sh, sleep, true) as bench/bb:1: sets O and P (the two
# commands on them) and PR (the flags podman needs on this VM, PEERS.md), for the caller's
# `local O P PR`.
busybox_stores() {
  local C=$1
  awk -v c="$C/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  rm -rf "$C" && mkdir -p "$C/rootfs/bin"
  cp /bin/busybox "$C/rootfs/bin/busybox"
  for t in sh sleep true; do ln -s busybox "$C/rootfs/bin/$t"; done
  tar -C "$C/rootfs" -cf "$C/bb.tar" .
  O="$OCI -q --data-dir $C/data"
  $O import "$C/bb.tar" bench/bb:1 -c 'CMD ["sh"]' >/dev/null
  $O save -o "$C/bb-archive.tar" bench/bb:1
  P="podman --root $C/podman --runroot $C/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend file"
  $P load -i "$C/bb-archive.tar" >/dev/null
  PR="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none"
}

# Detached containers: `run -d` until the id is printed, and `stop` of a container whose
# process exits on SIGTERM, against podman (Debian's, with conmon and runc, run as
# ../shared/PEERS.md says), the same busybox image in each store first; then the resident
# memory of our monitor and of conmon for one idle container.
containers_bench() {
  need podman conmon runc busybox-static
  local C=$D/ctr R=${RUNS:-3} O P PR
  busybox_stores "$C"
  local TERMSH="trap 'exit 0' TERM; sleep 1000 & wait"
  export O P PR TERMSH
  echo
  echo "### Detached containers: busybox, one container per figure (contenders alternate, $R rounds)"
  echo
  echo "| what | wall (median of $R) | peak RSS |"
  echo "|---|---|---|"
  race \
    "oci run -d sleep (ours)" "\$O rm -f d >/dev/null 2>&1; true" "\$O run -d --network none --name d bench/bb:1 sleep 1000" \
    "podman run -d sleep" "\$P rm -f -t 0 d >/dev/null 2>&1; true" "\$P run -d \$PR --name d docker.io/bench/bb:1 sleep 1000"
  race \
    "oci stop (ours, exits on SIGTERM)" "\$O rm -f s >/dev/null 2>&1; \$O run -d --network none --name s bench/bb:1 sh -c \"\$TERMSH\"; sleep 0.5" "\$O stop s" \
    "podman stop (exits on SIGTERM)" "\$P rm -f -t 0 s >/dev/null 2>&1; \$P run -d \$PR --name s docker.io/bench/bb:1 sh -c \"\$TERMSH\"; sleep 0.5" "\$P stop s"
  echo
  echo "Ratios: run -d ours / podman = $(ratio "oci run -d sleep (ours)" "podman run -d sleep"), stop ours / podman = $(ratio "oci stop (ours, exits on SIGTERM)" "podman stop (exits on SIGTERM)")"
  $O rm -f d s >/dev/null 2>&1 || true
  $P rm -f -t 0 -a >/dev/null 2>&1 || true
  local idle
  idle=$($O run -d --network none --name idle bench/bb:1 sleep 1000)
  $P run -d $PR --name idle docker.io/bench/bb:1 sleep 1000 >/dev/null
  sleep 3
  local ours conmon
  ours=$(pgrep -f "^oci-monitor $idle")
  conmon=$(pgrep -x conmon | head -1)
  echo
  echo "Resident memory of one idle container's monitor, 3 s after start (smaps_rollup):"
  echo
  echo "| monitor | Rss | Pss | anonymous |"
  echo "|---|---|---|---|"
  for p in "ours:$ours" "conmon:$conmon"; do
    local pid=${p#*:}
    printf '| %s | %s kB | %s kB | %s kB |\n' "${p%%:*}" \
      "$(awk '/^Rss:/{print $2}' /proc/$pid/smaps_rollup)" \
      "$(awk '/^Pss:/{print $2}' /proc/$pid/smaps_rollup)" \
      "$(awk '/^Pss_Anon:/{print $2}' /proc/$pid/smaps_rollup)"
  done
  $O rm -f idle >/dev/null
  $P rm -f -t 0 -a >/dev/null
  awk -v c="$C/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
}

# The verbs issue 32 measures against podman, each on its own store holding the same busybox
# image: `cp` of a large tree (the debootstrap minbase, 6,800 entries) into a running
# container, `stats --no-stream` of a running one, `create` then `start`, and `events` read
# back over the last ten minutes.
verbs_bench() {
  need podman conmon runc busybox-static
  setup_layer_data
  local C=$D/verbs R=${RUNS:-3} O P PR
  busybox_stores "$C"
  export O P PR
  $O run -d --network none --name st bench/bb:1 sleep 1000 >/dev/null
  $P run -d $PR --name st docker.io/bench/bb:1 sleep 1000 >/dev/null
  echo
  echo "### Verbs: cp, stats, create + start, events (busybox, contenders alternate, $R rounds)"
  echo
  echo "| what | wall (median of $R) | peak RSS |"
  echo "|---|---|---|"
  race \
    "oci cp minbase into a running container (ours)" "\$O rm -f cp >/dev/null 2>&1; \$O run -d --network none --name cp bench/bb:1 sleep 1000" "\$O cp $D/minbase cp:/" \
    "podman cp minbase into a running container" "\$P rm -f -t 0 cp >/dev/null 2>&1; \$P run -d \$PR --name cp docker.io/bench/bb:1 sleep 1000" "\$P cp $D/minbase cp:/"
  race \
    "oci stats --no-stream (ours)" "" "\$O stats --no-stream st" \
    "podman stats --no-stream" "" "\$P stats --no-stream st"
  race \
    "oci create + start (ours)" "\$O rm -f cs >/dev/null 2>&1; true" "\$O create --network none --name cs bench/bb:1 sleep 1000 && \$O start cs" \
    "podman create + start" "\$P rm -f -t 0 cs >/dev/null 2>&1; true" "\$P create \$PR --name cs docker.io/bench/bb:1 sleep 1000 && \$P start cs"
  race \
    "oci events, the last 10 minutes (ours)" "" "\$O events --since 10m --until 0s" \
    "podman events, the last 10 minutes" "" "\$P events --stream=false --since 10m"
  echo
  echo "Ratios ours / podman: cp $(ratio "oci cp minbase into a running container (ours)" "podman cp minbase into a running container"), stats $(ratio "oci stats --no-stream (ours)" "podman stats --no-stream"), create + start $(ratio "oci create + start (ours)" "podman create + start"), events $(ratio "oci events, the last 10 minutes (ours)" "podman events, the last 10 minutes")"
  $O rm -f st cp cs >/dev/null 2>&1 || true
  $P rm -f -t 0 -a >/dev/null 2>&1 || true
  awk -v c="$C/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
}

# The Docker Engine API: docker's CLI (28, /usr/local/bin/docker, a client only) through
# `oci system service` and through `podman system service`, each over its own store holding
# the same busybox image.
# Both Engine API services over stores of their own in $1, each holding the image $2 (a
# busybox with the applets $3...): sets ours, theirs (their pids) and P (podman's command).
api_services() {
  local C=$1 image=$2
  shift 2
  pkill -f "system service --time=0 unix://$C/" 2>/dev/null || true
  awk -v c="$C/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  rm -rf "$C" && mkdir -p "$C/rootfs/bin" "$C/rootfs/tmp"
  cp /bin/busybox "$C/rootfs/bin/busybox"
  for t in "$@"; do ln -s busybox "$C/rootfs/bin/$t"; done
  tar -C "$C/rootfs" -cf "$C/bb.tar" .
  local O="$OCI -q --data-dir $C/data"
  $O import "$C/bb.tar" "$image" -c 'CMD ["sh"]' >/dev/null
  $O save -o "$C/bb-archive.tar" "$image"
  P="podman --root $C/podman --runroot $C/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend file --network-backend netavark"
  $P load -i "$C/bb-archive.tar" >/dev/null
  $O system service --time=0 "unix://$C/oci.sock" &
  ours=$!
  $P system service --time=0 "unix://$C/podman.sock" &
  theirs=$!
  while [ ! -S "$C/oci.sock" ] || [ ! -S "$C/podman.sock" ]; do sleep 0.1; done
}

engine_api_bench() {
  need podman conmon runc netavark busybox-static
  local C=$D/api R=${RUNS:-3}
  local DOCKER=${DOCKER_CLI:-/usr/local/bin/docker}
  [ -x "$DOCKER" ] || DOCKER=/usr/bin/docker
  api_services "$C" docker.io/bench/bb:1 sh sleep true
  # podman needs these limits on this VM (PEERS.md); ours is given the same flags.
  local PR="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none"
  export DOCKER PR C
  echo
  echo "### The Engine API: docker's CLI $("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null) through each service ($R rounds, alternating)"
  echo
  echo "| what | wall (median of $R) | peak RSS of the client |"
  echo "|---|---|---|"
  race \
    "docker run --rm busybox true via oci system service" "" "DOCKER_HOST=unix://\$C/oci.sock \$DOCKER run --rm \$PR docker.io/bench/bb:1 true" \
    "docker run --rm busybox true via podman system service" "" "DOCKER_HOST=unix://\$C/podman.sock \$DOCKER run --rm \$PR docker.io/bench/bb:1 true"
  race \
    "docker run -d + rm -f via oci system service" "" "DOCKER_HOST=unix://\$C/oci.sock \$DOCKER run -d --name d \$PR docker.io/bench/bb:1 sleep 1000 && DOCKER_HOST=unix://\$C/oci.sock \$DOCKER rm -f d" \
    "docker run -d + rm -f via podman system service" "" "DOCKER_HOST=unix://\$C/podman.sock \$DOCKER run -d --name d \$PR docker.io/bench/bb:1 sleep 1000 && DOCKER_HOST=unix://\$C/podman.sock \$DOCKER rm -f d"
  echo
  echo "Ratios: run --rm ours / podman = $(ratio "docker run --rm busybox true via oci system service" "docker run --rm busybox true via podman system service"), run -d + rm -f ours / podman = $(ratio "docker run -d + rm -f via oci system service" "docker run -d + rm -f via podman system service")"
  kill $ours $theirs 2>/dev/null || true
  wait $ours $theirs 2>/dev/null || true
  $P rm -f -t 0 -a >/dev/null 2>&1 || true
  awk -v c="$C/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
}

# The client checks of benches/api_checks.py (the Python Docker SDK) against each service:
# how many pass, and which fail.
api_checks_bench() {
  need podman conmon runc netavark busybox-static
  python3 -c 'import docker' 2>/dev/null || { echo "compare.sh: api-checks needs the Python docker SDK (pip install docker)" >&2; failed=1; return; }
  local C=$D/api-checks
  # shellcheck disable=SC2046
  api_services "$C" docker.io/chk/bb:1 $(busybox --list | grep -vx busybox)
  local here
  here=$(dirname "$0")
  # Both with podman's limits on this VM (PEERS.md), one after the other.
  python3 "$here/api_checks.py" "unix://$C/oci.sock" docker.io/chk/bb:1 --ulimits > "$C/oci.out" 2>&1 || true
  python3 "$here/api_checks.py" "unix://$C/podman.sock" docker.io/chk/bb:1 --ulimits > "$C/podman.out" 2>&1 || true
  echo
  echo "### The Engine API: benches/api_checks.py (Python Docker SDK $(python3 -c 'import docker; print(docker.__version__)')) against each service"
  echo
  echo "| service | checks passed | failed |"
  echo "|---|---|---|"
  for s in oci podman; do
    echo "| $s system service | $(tail -1 "$C/$s.out" | sed 's/^passed //') | $(grep '^FAIL' "$C/$s.out" | awk '{print $2}' | tr -d ':' | paste -sd' ' -) |"
  done
  kill $ours $theirs 2>/dev/null || true
  wait $ours $theirs 2>/dev/null || true
  $P rm -f -t 0 -a >/dev/null 2>&1 || true
  awk -v c="$C/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
}

# $D/nginx-iperf.tar: Debian minbase with nginx-light and iperf3, made once by debootstrap.
nginx_tar() {
  if [ ! -s "$D/nginx-iperf.tar" ]; then
    rm -rf "$D/nginx-root"
    debootstrap --variant=minbase --include=nginx-light,iperf3 bookworm "$D/nginx-root" \
      http://deb.debian.org/debian >/dev/null
    rm -rf "$D/nginx-root/var/cache/apt/archives" "$D/nginx-root/var/lib/apt/lists"
    tar -C "$D/nginx-root" -cf "$D/nginx-iperf.tar" .
  fi
}

# Networking: nginx-light and iperf3 from debootstrap, published ports, against podman with
# netavark (root) and slirp4netns + rootlessport (rootless).
network_bench() {
  need podman runc netavark aardvark-dns slirp4netns nftables iperf3 apache2-utils curl uidmap
  local N=$D/net R=${RUNS:-3}
  nginx_tar
  awk -v c="$N/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  rm -rf "$N" && mkdir -p "$N"
  chmod 0666 /dev/net/tun
  local O="$OCI -q --data-dir $N/data"
  $O import "$D/nginx-iperf.tar" bench/nginx:1 -c 'CMD ["nginx","-g","daemon off;"]' -c 'EXPOSE 80' >/dev/null
  $O save -o "$N/nginx.tar" bench/nginx:1
  local P="podman --root $N/podman --runroot $N/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend file --network-backend netavark"
  $P load -i "$N/nginx.tar" >/dev/null
  local PR="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
  # Until the published port answers.
  local UP='until curl -s -o /dev/null http://127.0.0.1:$1/; do sleep 0.005; done'
  export O P PR UP
  echo
  echo "### Networking as root: nginx-light with a published port (contenders alternate, $R rounds)"
  echo
  echo "| what | wall (median of $R) | peak RSS |"
  echo "|---|---|---|"
  race \
    "oci run -d -p until the port answers (ours)" "\$O rm -f w >/dev/null 2>&1; true" "\$O run -d --name w -p 18080:80 bench/nginx:1 && bash -c \"\$UP\" _ 18080" \
    "podman run -d -p until the port answers" "\$P rm -f -t 0 w >/dev/null 2>&1; true" "\$P run -d \$PR --name w -p 18081:80 docker.io/bench/nginx:1 && bash -c \"\$UP\" _ 18081"
  echo
  echo "Ratio: run -d -p ours / podman = $(ratio "oci run -d -p until the port answers (ours)" "podman run -d -p until the port answers")"
  net_throughput "root" "$O" "$P" "$PR" 18080 18081
  $O rm -f w >/dev/null 2>&1 || true
  $P rm -f -t 0 -a >/dev/null 2>&1 || true

  # Rootless: the same as the test user, each with a store in its home.
  local U=oci-rs-rootless
  id -u $U >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin $U
  grep -q "^$U:" /etc/subuid || echo "$U:300000:65536" >>/etc/subuid
  grep -q "^$U:" /etc/subgid || echo "$U:300000:65536" >>/etc/subgid
  local H=$N/home
  mkdir -p "$H" && cp "$N/nginx.tar" "$H/" && chown -R $U:$U "$H"
  local AS="setpriv --reuid=$(id -u $U) --regid=$(id -g $U) --clear-groups env HOME=$H XDG_RUNTIME_DIR=$H/run"
  mkdir -p "$H/run" && chown $U:$U "$H/run" && chmod 700 "$H/run"
  local RO="$AS $OCI -q --data-dir $H/data"
  local RP="$AS podman --root $H/podman --runroot $H/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend file"
  (cd "$H" && $RO load -i "$H/nginx.tar" >/dev/null && $RP load -i "$H/nginx.tar" >/dev/null)
  export RO RP
  echo
  echo "### Networking rootless: slirp4netns and a userland port proxy each (contenders alternate, $R rounds)"
  echo
  echo "| what | wall (median of $R) | peak RSS |"
  echo "|---|---|---|"
  race \
    "rootless oci run -d -p until the port answers (ours)" "cd $H; \$RO rm -f w >/dev/null 2>&1; true" "cd $H; \$RO run -d --name w -p 18082:80 bench/nginx:1 && bash -c \"\$UP\" _ 18082" \
    "rootless podman run -d -p until the port answers" "cd $H; \$RP rm -f -t 0 w >/dev/null 2>&1; true" "cd $H; \$RP run -d \$PR --name w -p 18083:80 docker.io/bench/nginx:1 && bash -c \"\$UP\" _ 18083"
  echo
  echo "Ratio: rootless run -d -p ours / podman = $(ratio "rootless oci run -d -p until the port answers (ours)" "rootless podman run -d -p until the port answers")"
  (cd "$H" && net_throughput "rootless" "$RO" "$RP" "$PR" 18082 18083)
  (cd "$H" && { $RO rm -f w >/dev/null 2>&1; $RP rm -f -t 0 -a >/dev/null 2>&1; }) || true
  awk -v c="$N/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
}

# net_throughput MODE OURS PODMAN PODMAN_FLAGS OURPORT PODPORT: with container "w" of each
# serving nginx on the port: requests per second of ab (1 KiB page, 16 at a time), then
# iperf3 through a second published port; alternating, median of RUNS.
net_throughput() {
  local mode=$1 o=$2 p=$3 pr=$4 po=$5 pp=$6 r
  local -a oab pab oip pip
  $o exec w sh -c 'head -c 1024 /dev/zero | tr "\0" x > /var/www/html/k.html' 
  $p exec w sh -c 'head -c 1024 /dev/zero | tr "\0" x > /var/www/html/k.html'
  $o rm -f ip >/dev/null 2>&1 || true
  $p rm -f -t 0 ip >/dev/null 2>&1 || true
  $o run -d --name ip -p $((po + 100)):5201 bench/nginx:1 iperf3 -s >/dev/null
  $p run -d $pr --name ip -p $((pp + 100)):5201 docker.io/bench/nginx:1 iperf3 -s >/dev/null
  sleep 1
  for r in $(seq "${RUNS:-3}"); do
    oab+=("$(ab -q -n 20000 -c 16 "http://127.0.0.1:$po/k.html" 2>/dev/null | awk '/Requests per second/{print $4}')")
    pab+=("$(ab -q -n 20000 -c 16 "http://127.0.0.1:$pp/k.html" 2>/dev/null | awk '/Requests per second/{print $4}')")
    oip+=("$(iperf3 -c 127.0.0.1 -p $((po + 100)) -t 5 -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))')")
    pip+=("$(iperf3 -c 127.0.0.1 -p $((pp + 100)) -t 5 -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))')")
  done
  med() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
  echo
  echo "Through the published port, $mode (median of ${RUNS:-3}; ab -n 20000 -c 16 of a 1 KiB page; iperf3 -t 5 from the host's loopback):"
  echo
  echo "| contender | requests/s | iperf3 Gbit/s |"
  echo "|---|---|---|"
  echo "| ours | $(med "${oab[@]}") | $(med "${oip[@]}") |"
  echo "| podman | $(med "${pab[@]}") | $(med "${pip[@]}") |"
  $o rm -f ip >/dev/null 2>&1 || true
  $p rm -f -t 0 ip >/dev/null 2>&1 || true
}

# Builds: the same two-stage busybox Dockerfile and context through `oci build` and
# buildah (`bud --layers --isolation chroot`, its overlay driver as root), each with a private
# store holding only the base image: cold, nothing changed, one copied file changed. Then peak
# memory of `oci build` with a 10 MB and a 1 GB context (COPY of the whole context).
build_bench() {
  need buildah podman busybox-static
  local B=$D/build R=${RUNS:-3}
  awk -v c="$B/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  build_fixture "$B"
  local O="$OCI -q --data-dir $B/o"
  local BU="buildah --root $B/b --runroot $B/b-run"
  local BP="podman --root $B/b --runroot $B/b-run --cgroup-manager cgroupfs --events-backend file"
  # A fresh store with only the base: ours imports it, buildah's is podman's import.
  local OFRESH="rm -rf $B/o && $O import $B/bb.tar localhost/bench/bb:1 >/dev/null"
  local BFRESH="awk -v c=$B/b 'index(\$2, c) == 1 {print \$2}' /proc/mounts | sort -r | xargs -r umount -l; rm -rf $B/b $B/b-run && $BP import $B/bb.tar localhost/bench/bb:1 >/dev/null"
  local OB="$O build -t bench/app:1 $B/ctx" BB="$BU bud --layers --isolation chroot -t bench/app:1 $B/ctx"
  export O BU BP OFRESH BFRESH OB BB B
  echo
  echo "### oci build against buildah bud --layers: two stages, 200 small files and 20 MB copied ($R rounds, on the disk)"
  echo
  echo "| what | wall (median of $R) | peak RSS |"
  echo "|---|---|---|"
  race \
    "cold build (ours)" "eval \"\$OFRESH\"" "\$OB" \
    "cold build (buildah)" "eval \"\$BFRESH\"" "\$BB"
  race \
    "nothing changed (ours)" "" "\$OB" \
    "nothing changed (buildah)" "" "\$BB"
  race \
    "one copied file changed (ours)" "echo \$RANDOM >> $B/ctx/src/f7.txt" "\$OB" \
    "one copied file changed (buildah)" "echo \$RANDOM >> $B/ctx/src/f7.txt" "\$BB"
  echo
  echo "Ratios ours / buildah: cold $(ratio "cold build (ours)" "cold build (buildah)"), nothing changed $(ratio "nothing changed (ours)" "nothing changed (buildah)"), one file changed $(ratio "one copied file changed (ours)" "one copied file changed (buildah)")"
  # Memory as the context grows: COPY of the whole context, 10 MB then 1 GB.
  mkdir -p "$B/big"
  printf 'FROM localhost/bench/bb:1\nCOPY . /ctx/\n' >"$B/big/Dockerfile"
  echo
  echo "| context | oci build wall | peak RSS |"
  echo "|---|---|---|"
  for size in 10 1024; do
    rm -f "$B/big/blob"
    head -c "${size}M" /dev/urandom >"$B/big/blob"
    sync
    /usr/bin/time -f "%e %M" -o "$D/time.out" $O build --no-cache -t bench/big:1 "$B/big" >/dev/null 2>&1
    local out
    out=$(tail -1 "$D/time.out")
    printf '| %s MB | %s s | %s MiB |\n' "$size" "${out% *}" "$((${out#* } / 1024))"
  done
  rm -rf "$B/big"
  awk -v c="$B/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
}

# Build caches for CI (issue 31): a runner with an empty store builds the fixture cold, and
# again with the cache a first runner pushed to a local registry (ours: --cache-from, in
# BuildKit's format, mode=max; buildah: --cache-from/--cache-to REPO with --layers). The base
# image comes from the same registry each time, as on a CI runner.
cache_bench() {
  need buildah podman busybox-static
  local B=$D/cache R=${RUNS:-3}
  awk -v c="$B/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  build_fixture "$B"
  start_registry "$B/registry"
  local r=$REG
  "$OCI" -q --data-dir "$B/seed" import "$B/bb.tar" "$r/bench/bb:1" >/dev/null
  "$OCI" -q --data-dir "$B/seed" push "$r/bench/bb:1" >/dev/null
  sed -i "s#localhost/bench/bb:1#$r/bench/bb:1#" "$B/ctx/Dockerfile"
  local O="$OCI -q --data-dir $B/o"
  local BU="buildah --root $B/b --runroot $B/b-run"
  local BFRESH="awk -v c=$B/b 'index(\$2, c) == 1 {print \$2}' /proc/mounts | sort -r | xargs -r umount -l; rm -rf $B/b $B/b-run"
  local BB="$BU bud --layers --isolation chroot --tls-verify=false -t bench/app:1"
  # The first runners: each pushes its cache.
  $OCI -q --data-dir "$B/first" build --cache-to "type=registry,ref=$r/bench/app:cache,mode=max" -t bench/app:1 "$B/ctx" >/dev/null
  buildah --root "$B/bf" --runroot "$B/bf-run" bud --layers --isolation chroot --tls-verify=false --cache-to "$r/bench/bcache" -t bench/app:1 "$B/ctx" >/dev/null 2>&1
  export O BU BFRESH BB B r
  echo
  echo "### A CI runner's build from an empty store: cold, and with the cache another runner pushed ($R rounds, alternating)"
  echo
  echo "| what | wall (median of $R) | peak RSS |"
  echo "|---|---|---|"
  race \
    "cold, empty store (ours)" "rm -rf $B/o" "\$O build -t bench/app:1 $B/ctx" \
    "--cache-from, empty store (ours)" "rm -rf $B/o" "\$O build --cache-from $r/bench/app:cache -t bench/app:1 $B/ctx" \
    "cold, empty store (buildah)" "eval \"\$BFRESH\"" "\$BB $B/ctx" \
    "--cache-from, empty store (buildah)" "eval \"\$BFRESH\"" "\$BB --cache-from $r/bench/bcache $B/ctx"
  echo
  echo "Ratios: ours with the cache / ours cold $(ratio "--cache-from, empty store (ours)" "cold, empty store (ours)"); buildah with the cache / buildah cold $(ratio "--cache-from, empty store (buildah)" "cold, empty store (buildah)"); ours / buildah with the cache $(ratio "--cache-from, empty store (ours)" "--cache-from, empty store (buildah)")"
  kill "$REG_PID"
  awk -v c="$B/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
}

# A multi-platform build (issue 31): the build fixture for linux/amd64 and linux/arm64 at
# once, the arm64 RUNs through binfmt_misc and qemu-user-static, from an empty store each
# round; the base is an index of an amd64 and an arm64 busybox in a local registry. Ours:
# `oci build --platform a,b` (an index under the tag); buildah: `bud --platform a,b --manifest`.
multiplatform_bench() {
  need buildah podman busybox-static qemu-user-static
  # shellcheck source=scripts/arm64.sh
  . scripts/arm64.sh
  arm64_setup || { echo "multiplatform: no arm64 RUN here (binfmt_misc, busybox-static:arm64)"; failed=1; return; }
  local B=$D/multi R=${RUNS:-3}
  awk -v c="$B/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  build_fixture "$B"
  mkdir -p "$B/rootfs-arm64/bin"
  cp "$arm64_cache/bin/busybox" "$B/rootfs-arm64/bin/busybox"
  for t in sh cat wc ls echo mkdir; do ln -s busybox "$B/rootfs-arm64/bin/$t"; done
  tar -C "$B/rootfs-arm64" -cf "$B/bb-arm64.tar" .
  start_registry "$B/registry"
  local r=$REG S="$OCI -q --data-dir $B/seed"
  $S import --platform linux/amd64 "$B/bb.tar" "$r/bench/bb:amd64" >/dev/null
  $S import --platform linux/arm64 "$B/bb-arm64.tar" "$r/bench/bb:arm64" >/dev/null
  $S manifest create "$r/bench/bb:1" "$r/bench/bb:amd64" "$r/bench/bb:arm64" >/dev/null
  $S manifest push "$r/bench/bb:1" >/dev/null
  sed -i "s#localhost/bench/bb:1#$r/bench/bb:1#" "$B/ctx/Dockerfile"
  local O="$OCI -q --data-dir $B/o"
  local BU="buildah --root $B/b --runroot $B/b-run"
  local BFRESH="awk -v c=$B/b 'index(\$2, c) == 1 {print \$2}' /proc/mounts | sort -r | xargs -r umount -l; rm -rf $B/b $B/b-run"
  export O BU BFRESH B r
  echo
  echo "### Multi-platform build, linux/amd64 + linux/arm64 (arm64 RUNs under qemu), from an empty store ($R rounds, alternating)"
  echo
  echo "| what | wall (median of $R) | peak RSS |"
  echo "|---|---|---|"
  race \
    "oci build --platform linux/amd64,linux/arm64 (ours)" "rm -rf $B/o" "\$O build --platform linux/amd64,linux/arm64 -t bench/app:1 $B/ctx" \
    "buildah bud --platform linux/amd64,linux/arm64 --manifest" "eval \"\$BFRESH\"" "\$BU bud --layers --isolation chroot --tls-verify=false --platform linux/amd64,linux/arm64 --manifest bench/app:1 $B/ctx"
  echo
  echo "Ratio ours / buildah: $(ratio "oci build --platform linux/amd64,linux/arm64 (ours)" "buildah bud --platform linux/amd64,linux/arm64 --manifest")"
  kill "$REG_PID"
  awk -v c="$B/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
}

# export: the nginx-light stand-in's filesystem (about 90 MB) as a tar to a file on the
# disk, from a stopped container in each store, against podman (issue 29, item 7).
export_bench() {
  need podman runc
  local E=$D/export R=${RUNS:-3}
  nginx_tar
  awk -v c="$E/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  rm -rf "$E" && mkdir -p "$E"
  local O="$OCI -q --data-dir $E/data"
  $O import "$D/nginx-iperf.tar" bench/nginx:1 -c 'CMD ["nginx","-g","daemon off;"]' >/dev/null
  $O save -o "$E/nginx.tar" bench/nginx:1
  local P="podman --root $E/podman --runroot $E/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend file"
  $P load -i "$E/nginx.tar" >/dev/null
  local PR="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none"
  $O run --network none --name x bench/nginx:1 sh -c 'echo changed > /etc/motd' >/dev/null
  $P run $PR --name x docker.io/bench/nginx:1 sh -c 'echo changed > /etc/motd' >/dev/null
  export O P E
  echo
  echo "### export of a stopped nginx-light container to a file (contenders alternate, $R rounds)"
  echo
  echo "| what | wall (median of $R) | peak RSS |"
  echo "|---|---|---|"
  race \
    "oci export (ours)" "rm -f \$E/o.tar" "\$O export -o \$E/o.tar x" \
    "podman export" "rm -f \$E/p.tar" "\$P export -o \$E/p.tar x"
  echo
  echo "Tar sizes: ours $(stat -c %s "$E/o.tar") bytes, podman's $(stat -c %s "$E/p.tar") bytes. Ratio ours / podman = $(ratio "oci export (ours)" "podman export")"
  $O rm -f x >/dev/null 2>&1 || true
  $P rm -f -a >/dev/null 2>&1 || true
  awk -v c="$E/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
}

# The four calls containerd's runc shim makes for a Kubernetes pod sandbox (create, start,
# kill, delete), each a process start, timed one by one against runc on a sandbox-like bundle
# (a static pause, pid/ipc/uts/mount namespaces, a network namespace joined by path, a
# cgroupfs path, a read-only root), the runtimes alternating round by round.
runc_calls_bench() {
  need runc gcc libc6-dev
  cargo build --release -q -p oci-examples --bin oci-runc
  local RUNC=${CARGO_TARGET_DIR:-$PWD/target}/release/oci-runc B=$D/podbundle N=${N:-40}
  local pause_c
  pause_c=$(dirname "$0")/../../shared/tools/cri/pause.c
  [ -f "$pause_c" ] || pause_c=/work/shared/tools/cri/pause.c
  rm -rf "$B" && mkdir -p "$B/rootfs"
  gcc -static -O2 -o "$B/rootfs/pause" "$pause_c"
  (cd "$B" && runc spec)
  ip netns add oci-bench-pod 2>/dev/null || true
  python3 - "$B/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/pause"]
c["process"]["terminal"] = False
c["root"]["readonly"] = True
c["linux"]["namespaces"] = [{"type": t} for t in ["pid", "ipc", "uts", "mount"]] + [
    {"type": "network", "path": "/var/run/netns/oci-bench-pod"}]
c["linux"]["cgroupsPath"] = "/oci-bench/pod/sandbox"
c["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}], "cpu": {"shares": 2}}
json.dump(c, open(p, "w"))
PY
  echo
  echo "### A pod sandbox's runtime calls, one process each: medians of $N per round (ms), runtimes alternating"
  echo
  echo "| runtime | create | start | kill | delete | create + start + 2 kill + 2 delete |"
  echo "|---|---|---|---|---|---|"
  for round in 1 2 3; do
    for rt in /usr/sbin/runc "$RUNC"; do
      python3 - "$rt" "$B" "$D/st-pod" "$N" <<'PY'
import statistics, subprocess, sys, time
rt, bundle, root, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ph = {k: [] for k in ("create", "start", "kill", "delete")}
def call(k, args):
    t = time.perf_counter()
    subprocess.run([rt, "--root", root] + args, check=True)
    ph[k].append((time.perf_counter() - t) * 1000)
for i in range(n):
    cid = f"pod{i}"
    call("create", ["create", "--bundle", bundle, "--pid-file", bundle + "/pid", cid])
    call("start", ["start", cid])
    call("kill", ["kill", cid, "9"])
    time.sleep(0.02)
    call("delete", ["delete", cid])
m = {k: statistics.median(v) for k, v in ph.items()}
pod = m["create"] + m["start"] + 2 * m["kill"] + 2 * m["delete"]
name = "runc" if rt.endswith("/runc") else "oci-runc (ours)"
print(f"| {name} | {m['create']:.2f} | {m['start']:.2f} | {m['kill']:.2f} | {m['delete']:.2f} | {pod:.1f} |")
PY
    done
  done
  ip netns del oci-bench-pod 2>/dev/null || true
}

echo "## $(date -u +%F) on $(nproc) cores, $(uname -r)"
case $what in
  layer) layer_bench ;;
  registry) registry_bench ;;
  registry-server) registry_server_bench ;;
  runtime) runtime_bench ;;
  runc-calls) runc_calls_bench ;;
  containers) containers_bench ;;
  verbs) verbs_bench ;;
  network) network_bench ;;
  build) build_bench ;;
  cache) cache_bench ;;
  multiplatform) multiplatform_bench ;;
  export) export_bench ;;
  engine-api) engine_api_bench ;;
  api-checks) api_checks_bench ;;
  all) layer_bench; registry_bench; registry_server_bench; runtime_bench; containers_bench; verbs_bench; network_bench; build_bench; cache_bench; multiplatform_bench; export_bench; engine_api_bench; api_checks_bench ;;
  *) echo "usage: $0 [layer|registry|registry-server|runtime|runc-calls|containers|verbs|network|build|cache|multiplatform|export|engine-api|api-checks|all]" >&2; exit 2 ;;
esac
if ((failed)); then
  echo "compare.sh: some measurements FAILED; the table above is incomplete" >&2
  exit 1
fi
