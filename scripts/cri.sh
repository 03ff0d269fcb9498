#!/usr/bin/env bash
# Kubernetes on our runtime: containerd's CRI (Debian's containerd 1.6) with two runtime
# handlers, `runc` and `oci` (the runc v2 shim with BinaryName = our oci-runc), checked with
# crictl flows (scripts/cri-smoke.sh) and the Kubernetes CRI validation suite (critest,
# cri-tools v1.26.1) run against both handlers. Fails when a spec that passes with runc fails
# with oci-runc, or when a smoke step fails.
#
#   scripts/cri.sh              smoke + critest, both handlers
#   scripts/cri.sh bench [N]    critest -benchmark (pod and container lifecycle), N samples
#                               per handler (default 40), handlers alternating in rounds of 10
#
# Needs root, containerd, runc, containernetworking-plugins, docker-registry, skopeo, umoci,
# jq, gcc with a static libc (scripts/test.sh installs them) and the prebuilt crictl, critest
# and harness of ../shared/tools/cri (CRI_TOOLS). The stand-in images critest asks for are
# made from busybox-static and a Debian nginx-light root by that harness's images.sh and
# served by a private registry on 127.0.0.1:$CRI_REG_PORT. Work files: $CRI_WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
MODE=${1:-test}

TOOLS=${CRI_TOOLS:-}
if [ -z "$TOOLS" ]; then
  for t in "$REPO/../shared/tools/cri" /work/shared/tools/cri; do
    [ -x "$t/critest" ] && { TOOLS=$(cd "$t" && pwd); break; }
  done
fi
if [ -z "$TOOLS" ] || [ ! -x "$TOOLS/critest" ] || [ ! -x "$TOOLS/crictl" ]; then
  echo "cri.sh: no prebuilt crictl and critest (set CRI_TOOLS to shared/tools/cri): skipping" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "cri.sh: containerd's CRI needs root: skipping" >&2
  exit 0
fi
for b in containerd /usr/sbin/runc /usr/lib/cni/bridge docker-registry skopeo umoci jq gcc; do
  command -v "$b" >/dev/null || { echo "cri.sh: $b is missing (scripts/test.sh installs it)" >&2; exit 1; }
done
export PATH="$TOOLS:$PATH"

export CRI_WORK=${CRI_WORK:-/var/tmp/oci-rs-cri}
export CNI_BRIDGE=${CNI_BRIDGE:-ocirscri0} CNI_SUBNET=${CNI_SUBNET:-10.233.98.0/24}
PORT=${CRI_REG_PORT:-5099}
export REG=127.0.0.1:$PORT
W=$CRI_WORK
mkdir -p "$W"

# The checks take the debug build the tests made; the benchmark a release build.
if [ "$MODE" = bench ]; then profile=release; else profile=debug; fi
if [ $profile = release ]; then
  cargo build --release -q -p oci-examples --bin oci-runc --bin oci
else
  cargo build -q -p oci-examples --bin oci-runc --bin oci
fi
target_dir=${CARGO_TARGET_DIR:-$REPO/target}
# CRI_RUNTIME_WRAPPER: a program containerd runs in place of oci-runc (to time or trace its calls).
export OCI_RUNC=${CRI_RUNTIME_WRAPPER:-$target_dir/$profile/oci-runc}
OCI="$target_dir/$profile/oci -q --data-dir $W/oci"

pids=()
shm_before=$(ipcs -m | awk '$2 ~ /^[0-9]+$/ {print $2}')
cleanup() {
  "$TOOLS/containerd.sh" stop >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # critest's HostIpc specs make 1 MiB System V segments on the host and leave them.
  for id in $(ipcs -m | awk '$2 ~ /^[0-9]+$/ {print $2}'); do
    echo "$shm_before" | grep -qx "$id" || ipcrm -m "$id" 2>/dev/null || true
  done
}
trap cleanup EXIT

# The registry the stand-ins are pushed to and containerd pulls from (hosts.toml mirrors).
rm -rf "$W/registry" && mkdir -p "$W/registry"
cat > "$W/registry/config.yml" <<Y
version: 0.1
storage:
  filesystem:
    rootdirectory: $W/registry/data
http:
  addr: $REG
Y
docker-registry serve "$W/registry/config.yml" > "$W/registry/log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fs "http://$REG/v2/" >/dev/null && break; sleep 0.1; done

# Base images: busybox-static (applets made by images.sh) and Debian's nginx-light.
rm -rf "$W/base" "$W/oci" && mkdir -p "$W/base/bb/bin" "$W/base/bb/etc" "$W/base/bb/root" "$W/base/bb/tmp"
chmod 1777 "$W/base/bb/tmp"
cp /bin/busybox "$W/base/bb/bin/busybox"
ln -s busybox "$W/base/bb/bin/sh"
tar -C "$W/base/bb" -cf "$W/base/bb.tar" bin etc root tmp
$OCI import "$W/base/bb.tar" "$REG/library/busybox:latest" -c 'CMD ["sh"]' >/dev/null
$OCI push "$REG/library/busybox:latest" >/dev/null
nginx_root=""
for r in "$REPO/target/tmp/nginx-light-rootfs" "$W/nginx-root"; do
  [ -x "$r/usr/sbin/nginx" ] && { nginx_root=$r; break; }
done
if [ -z "$nginx_root" ]; then
  rm -rf "$W/nginx-tmp"
  debootstrap --variant=minbase --include=nginx-light bookworm "$W/nginx-tmp" http://deb.debian.org/debian >/dev/null
  rm -rf "$W/nginx-tmp/var/cache/apt/archives" "$W/nginx-tmp/var/lib/apt/lists"
  mv "$W/nginx-tmp" "$W/nginx-root"
  nginx_root=$W/nginx-root
fi
tar -C "$nginx_root" -cf "$W/base/nginx.tar" $(ls "$nginx_root")
$OCI import "$W/base/nginx.tar" "$REG/library/nginx:1.25" -c 'CMD ["nginx","-g","daemon off;"]' -c 'EXPOSE 80' >/dev/null
$OCI push "$REG/library/nginx:1.25" >/dev/null
"$TOOLS/images.sh" > "$W/images.log" 2>&1 || { cat "$W/images.log"; exit 1; }

"$TOOLS/containerd.sh" start
C="crictl --config $W/crictl.yaml"

if [ "$MODE" = bench ]; then
  N=${2:-40}
  $C pull registry.k8s.io/e2e-test-images/busybox:1.29-2 >/dev/null
  cat > "$W/bench.yaml" <<Y
containersNumber: 10
containersNumberParallel: 1
podsNumber: 10
podsNumberParallel: 1
imagesNumber: 0
Y
  S=unix://$W/containerd/containerd.sock
  rm -rf "$W/bench" && mkdir -p "$W/bench"
  for round in $(seq $((N / 10))); do
    for h in ${CRI_BENCH_HANDLERS:-runc oci}; do
      out=$W/bench/$h-$round; mkdir -p "$out"
      critest --runtime-endpoint "$S" --image-endpoint "$S" --runtime-handler "$h" -benchmark \
        --benchmarking-params-file "$W/bench.yaml" --benchmarking-output-dir "$out" \
        --ginkgo.focus 'benchmark about' --ginkgo.no-color > "$out/log" 2>&1 \
        || { tail -20 "$out/log"; exit 1; }
    done
  done
  python3 "$REPO/scripts/cri-bench.py" "$W/bench"
  exit 0
fi

fail=0
for h in oci runc; do
  echo "cri.sh: crictl flows, handler $h"
  "$REPO/scripts/cri-smoke.sh" "$h" || fail=1
done

for h in ${CRI_BENCH_HANDLERS:-runc oci}; do
  $C rmi --all >/dev/null 2>&1 || true
  "$TOOLS/critest.sh" "$h" | tee "$W/critest-$h.summary"
done
passed() {
  jq -r '.[0].SpecReports[] | select(.LeafNodeType=="It" and .State=="passed") | (.ContainerHierarchyTexts + [.LeafNodeText]) | join(" ")' "$W/critest-$1.json" | sort
}
ran() {
  jq -r '.[0].SpecReports[] | select(.LeafNodeType=="It") | .State' "$W/critest-$1.json" | wc -l
}
missing=$(comm -23 <(passed runc) <(passed oci))
echo "cri.sh: critest passed: runc $(passed runc | wc -l), oci $(passed oci | wc -l) of $(ran oci) specs"
if [ -n "$missing" ]; then
  echo "cri.sh: specs that pass with runc and fail with oci-runc:" >&2
  echo "$missing" | sed 's/^/  /' >&2
  fail=1
fi
if [ "$(passed runc | wc -l)" -lt 70 ]; then
  echo "cri.sh: runc passed fewer than 70 specs: the harness is broken, not the runtime" >&2
  fail=1
fi
exit $fail
