#!/usr/bin/env bash
# crictl flows against containerd's CRI with one runtime handler, each step checked:
#   scripts/cri-smoke.sh HANDLER        (oci or runc; scripts/cri.sh starts containerd first)
# runp, create, start, exec (output and exit code), exec with a timeout (returns in time and
# the process is gone), logs, attach (stdin in, output out), port-forward (HTTP to nginx),
# stats, stop, rm, a privileged container (every host device), stopp, rmp.
# Env: CRI_WORK (crictl.yaml and the work files); crictl on PATH.
set -uo pipefail
H=${1:?handler}
W=${CRI_WORK:?}
C="crictl --config $W/crictl.yaml"
D=$W/smoke-$H
rm -rf "$D" && mkdir -p "$D" && cd "$D" || exit 1
failed=0
ok() { echo "  ok   $1"; }
bad() { echo "  FAIL $1: $2" >&2; failed=1; }
# check NAME EXPECTED-REGEX COMMAND...: the command succeeds and its output matches
check() {
  local name=$1 want=$2; shift 2
  local out
  if ! out=$("$@" 2>&1); then bad "$name" "exit status $?: $(echo "$out" | tail -3 | tr '\n' ' ')"; return 1; fi
  if ! grep -Eq -- "$want" <<<"$out"; then bad "$name" "wanted /$want/, got: $(echo "$out" | head -5 | tr '\n' ' ')"; return 1; fi
  ok "$name"; LAST=$out
}
BB=registry.k8s.io/e2e-test-images/busybox:1.29-2
NG=registry.k8s.io/e2e-test-images/nginx:1.14-2
$C pull "$BB" >/dev/null && $C pull "$NG" >/dev/null || { bad pull "cannot pull the stand-in images"; exit 1; }

cat > pod.json <<J
{ "metadata": { "name": "smoke-$H", "namespace": "default", "uid": "smoke-$H-uid", "attempt": 1 },
  "log_directory": "$D/logs",
  "port_mappings": [ { "protocol": 0, "container_port": 80, "host_port": 0 } ],
  "linux": { "security_context": { "privileged": true } } }
J
cat > ticker.json <<J
{ "metadata": { "name": "ticker" }, "image": { "image": "$BB" },
  "command": ["sh", "-c", "echo hello-from-$H; i=0; while true; do echo tick \$i; i=\$((i+1)); sleep 1; done"],
  "log_path": "ticker.log", "linux": {} }
J
cat > cat.json <<J
{ "metadata": { "name": "cat" }, "image": { "image": "$BB" }, "command": ["cat"],
  "stdin": true, "log_path": "cat.log", "linux": {} }
J
cat > nginx.json <<J
{ "metadata": { "name": "nginx" }, "image": { "image": "$NG" }, "log_path": "nginx.log", "linux": {} }
J
cat > priv.json <<J
{ "metadata": { "name": "priv" }, "image": { "image": "$BB" },
  "command": ["sh", "-c", "ls /dev/cpu/0; sleep 300"], "log_path": "priv.log",
  "linux": { "security_context": { "privileged": true } } }
J

check runp '^[0-9a-f]{64}$' $C runp --runtime "$H" pod.json || exit 1; POD=$LAST
check inspectp "\"runtimeHandler\": \"$H\"" $C inspectp "$POD"
check create '^[0-9a-f]{64}$' $C create "$POD" ticker.json pod.json || exit 1; CTR=$LAST
check start "$CTR" $C start "$CTR"
check running CONTAINER_RUNNING sh -c "$C inspect $CTR | jq -r .status.state"
check exec "^exec-ok uid=0" $C exec "$CTR" sh -c 'echo exec-ok $(id)'
$C exec "$CTR" sh -c 'exit 3' >/dev/null 2>&1; rc=$?
out=$($C exec "$CTR" sh -c 'exit 3' 2>&1)
if grep -q "exit code 3" <<<"$out"; then ok "exec exit code"; else bad "exec exit code" "rc=$rc: $out"; fi
# ExecSync with a timeout (the kubelet's exec probes): returns after about 2 s, and the
# process it started is gone (containerd kills the pid oci-runc wrote).
t0=$(date +%s)
out=$(timeout 30 $C exec -s --timeout 2 "$CTR" sleep 4321 2>&1); rc=$?
took=$(( $(date +%s) - t0 ))
if [ $rc != 124 ] && [ $took -le 10 ] && grep -qi "timeout" <<<"$out"; then ok "exec timeout (${took}s)"; else bad "exec timeout" "rc=$rc after ${took}s: $out"; fi
sleep 1
left=$(for p in $(pgrep -x sleep); do tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -qx 'sleep 4321 ' && grep -q "$CTR" /proc/$p/cgroup 2>/dev/null && echo $p; done)
if [ -z "$left" ]; then ok "exec timeout killed the process"; else bad "exec timeout" "sleep 4321 still runs: $left"; kill $left; fi
sleep 1
check logs "hello-from-$H" $C logs "$CTR"
check stats '"workingSetBytes"' $C stats -o json "$CTR"
check stats-value '^[1-9][0-9]*$' sh -c "$C stats -o json $CTR | jq -r '.stats[0].memory.workingSetBytes.value'"

# attach: stdin goes to cat, what it echoes comes back on stdout.
check create-cat '^[0-9a-f]{64}$' $C create "$POD" cat.json pod.json && CAT=$LAST
check start-cat "$CAT" $C start "$CAT"
out=$( (echo attached-line; sleep 2) | timeout 10 $C attach -i "$CAT" 2>&1 )
if grep -q attached-line <<<"$out"; then ok attach; else bad attach "$out"; fi

# port-forward to nginx in the pod's network namespace.
check create-nginx '^[0-9a-f]{64}$' $C create "$POD" nginx.json pod.json && NGX=$LAST
check start-nginx "$NGX" $C start "$NGX"
for _ in $(seq 50); do $C exec "$NGX" sh -c 'test -s /run/nginx.pid' >/dev/null 2>&1 && break; sleep 0.2; done
port=$(( 20000 + RANDOM % 20000 ))
$C port-forward "$POD" "$port:80" > pf.log 2>&1 &
pf=$!
body=""
for _ in $(seq 50); do body=$(curl -fs "http://127.0.0.1:$port/" 2>/dev/null) && break; sleep 0.2; done
kill $pf 2>/dev/null; wait $pf 2>/dev/null
if grep -qi nginx <<<"$body"; then ok port-forward; else bad port-forward "no nginx page through 127.0.0.1:$port ($(cat pf.log | tr '\n' ' '))"; fi

check stop "$CTR" $C stop -t 5 "$CTR"
check exited CONTAINER_EXITED sh -c "$C inspect $CTR | jq -r .status.state"
check rm "$CTR" $C rm "$CTR"
$C rm -f "$CAT" "$NGX" >/dev/null 2>&1

# Privileged: containerd passes every host device, /dev/cpu/0/cpuid among them.
check create-priv '^[0-9a-f]{64}$' $C create "$POD" priv.json pod.json && PRIV=$LAST
check start-priv "$PRIV" $C start "$PRIV"
check priv-devices cpuid $C exec "$PRIV" ls /dev/cpu/0
$C rm -f "$PRIV" >/dev/null 2>&1

check stopp "Stopped sandbox" $C stopp "$POD"
check rmp "Removed sandbox" $C rmp "$POD"
exit $failed
