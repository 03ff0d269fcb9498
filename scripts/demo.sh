#!/usr/bin/env bash
# The main job, offline: build a busybox image from the busybox-static package, push it to a
# real registry (CNCF distribution on a loopback port), pull it back into an empty store, run
# a command in it, inspect it, save it as a docker-archive and check it with skopeo, load it back.
#
#   scripts/demo.sh            run it (installs docker-registry, busybox-static, skopeo if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

packages=(docker-registry busybox-static skopeo)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "demo: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --release -q -p oci-examples --bin oci
oci=${CARGO_TARGET_DIR:-$PWD/target}/release/oci
work=$(mktemp -d)
trap 'kill $registry_pid 2>/dev/null || true; rm -rf "$work"' EXIT

# A registry on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

# A root filesystem from the busybox-static package.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for t in sh echo ls cat true; do ln -s busybox "$work/rootfs/bin/$t"; done
echo "hello from oci-rs" >"$work/rootfs/etc/motd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

image=127.0.0.1:$port/demo/busybox:1
set -x
"$oci" --data-dir "$work/a" import "$work/rootfs.tar" "$image" -c 'CMD ["/bin/sh"]' -c 'ENV DEMO=1'
"$oci" --data-dir "$work/a" push "$image"
"$oci" --data-dir "$work/b" pull "$image"
"$oci" --data-dir "$work/b" run --rm "$image" sh -c 'echo hello from $(hostname); cat /etc/motd'
"$oci" --data-dir "$work/b" images
"$oci" --data-dir "$work/b" inspect "$image"
"$oci" --data-dir "$work/b" manifest inspect "$image"
"$oci" --data-dir "$work/b" save -o "$work/busybox.tar" "$image"
skopeo inspect "docker-archive:$work/busybox.tar"
"$oci" --data-dir "$work/c" load -i "$work/busybox.tar"
"$oci" --data-dir "$work/c" images
