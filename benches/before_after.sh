#!/usr/bin/env bash
# Before/after race of the `oci` CLI: the same work through two release binaries, each with
# its own data dir under $D, contenders alternating every round (and the order flipped every
# round: before,after then after,before), RUNS rounds. Median wall (ms) with min–max and the
# largest peak RSS (GNU time %M) per figure. The build
# fixture is benches/fixtures.sh, as compare.sh's build bench uses it.
#
#   BEFORE=/path/to/oci AFTER=/path/to/oci RUNS=11 benches/before_after.sh
set -euo pipefail
# shellcheck source=benches/fixtures.sh
. "$(dirname "$0")/fixtures.sh"
RUNS=${RUNS:-7}
D=${D:-/var/tmp/ba-bench}
BEFORE=${BEFORE:?the release oci built at the older commit}
AFTER=${AFTER:?the release oci built at the newer commit}
CONTENDERS=(before after)
declare -A BIN=([before]=$BEFORE [after]=$AFTER)
mkdir -p "$D"

umount_under() { awk -v c="$1/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l; }

# O for a contender: its binary, quiet, its own data dir.
o_of() { echo "${BIN[$1]} -q --data-dir $D/$1/data"; }
# OB for a contender: the same with the build store.
ob_of() { echo "${BIN[$1]} -q --data-dir $D/$1/build"; }

failed=0
declare -A MED
# race FIGURE PREP CMD: RUNS rounds; in each both contenders run CMD once (after PREP, untimed),
# the order flipped every other round. PREP and CMD are bash snippets that see $O, $OB (the
# contender's oci with its data dirs), $C (the contender's name) and the exported variables.
race() {
  local fig=$1 prep=$2 cmd=$3 run c t0 t1 ms rss
  local -A times mems
  for run in $(seq "$RUNS"); do
    local order=(before after)
    ((run % 2 == 0)) && order=(after before)
    for c in "${order[@]}"; do
      export C=$c O OB
      O=$(o_of "$c")
      OB=$(ob_of "$c")
      [ -n "$prep" ] && bash -c "$prep" >/dev/null 2>&1
      sync
      t0=$EPOCHREALTIME
      if ! /usr/bin/time -f "%M" -o "$D/time.out" bash -c "$cmd" >/dev/null 2>"$D/cmd.err"; then
        echo "race: $fig ($c) failed: $(tail -3 "$D/cmd.err")" >&2
        printf '| %s | FAILED (%s) | | |\n' "$fig" "$c"
        failed=1
        return
      fi
      t1=$EPOCHREALTIME
      ms=$(echo "scale=1; (${t1/./} - ${t0/./}) / 1000" | bc)
      rss=$(tail -1 "$D/time.out")
      times[$c]+="$ms "
      mems[$c]+="$rss "
      echo "raw: $fig | round $run | $c | ${ms} ms | ${rss} KiB" >>"$D/raw.txt"
    done
  done
  local cell=()
  for c in "${CONTENDERS[@]}"; do
    local sorted t lo hi m
    sorted=$(tr ' ' '\n' <<<"${times[$c]}" | sed '/^$/d' | sort -n)
    t=$(sed -n "$(((RUNS + 1) / 2))p" <<<"$sorted")
    lo=$(head -1 <<<"$sorted")
    hi=$(tail -1 <<<"$sorted")
    m=$(tr ' ' '\n' <<<"${mems[$c]}" | sed '/^$/d' | sort -n | tail -1)
    MED[$fig.$c]=$t
    cell+=("$t ms ($lo–$hi), $((m / 1024)) MiB")
  done
  printf '| %s | %s | %s | %s |\n' "$fig" "${cell[0]}" "${cell[1]}" \
    "$(printf '%.2f' "$(echo "scale=4; ${MED[$fig.after]} / ${MED[$fig.before]}" | bc)")"
}

echo "## before/after race, $(date -u '+%F %T') UTC, $(nproc) cores, $(uname -r), RUNS=$RUNS"
echo
echo "before: $BEFORE ($(stat -c %s "$BEFORE") bytes)"
echo "after:  $AFTER ($(stat -c %s "$AFTER") bytes)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$D/raw.txt"

# --- setup (from containers_bench): busybox with sh sleep true, imported into each store ---
for c in "${CONTENDERS[@]}"; do
  umount_under "$D/$c"
  rm -rf "${D:?}/$c"
done
rm -rf "$D/rootfs" && mkdir -p "$D/rootfs/bin"
cp /bin/busybox "$D/rootfs/bin/busybox"
for t in sh sleep true; do ln -s busybox "$D/rootfs/bin/$t"; done
tar -C "$D/rootfs" -cf "$D/bb.tar" .
for c in "${CONTENDERS[@]}"; do
  mkdir -p "$D/$c"
  $(o_of "$c") import "$D/bb.tar" bench/bb:1 -c 'CMD ["sh"]' >/dev/null
done
TERMSH="trap 'exit 0' TERM; sleep 1000 & wait"
export TERMSH D

echo
echo "| what | before median (min–max), peak RSS | after median (min–max), peak RSS | after/before |"
echo "|---|---|---|---|"

# a. run -d
race "a. run -d --network none --name d bench/bb:1 sleep 1000" \
  "\$O rm -f d; true" \
  "\$O run -d --network none --name d bench/bb:1 sleep 1000"
# b. stop of a container that exits on SIGTERM
race "b. stop s (sh exits on SIGTERM)" \
  "\$O rm -f s; \$O run -d --network none --name s bench/bb:1 sh -c \"\$TERMSH\"; sleep 0.5" \
  "\$O stop s"
# c. foreground run --rm true, the whole call
race "c. run --rm --network none bench/bb:1 true" "" \
  "\$O run --rm --network none bench/bb:1 true"

# d. listings: one image; three stopped containers and nothing else
for c in "${CONTENDERS[@]}"; do
  O=$(o_of "$c")
  $O rm -f d s >/dev/null 2>&1 || true
  sleep 0.5
  left=$($O ps -a -q 2>/dev/null | wc -l)
  [ "$left" = 0 ] || echo "note: $c had $left containers left before the ps figure (run --rm leftovers?): $($O ps -a 2>&1 | tr '\n' ';')" >&2
  $O ps -a -q | xargs -r $O rm -f >/dev/null
  for i in 1 2 3; do $O run --network none --name "p$i" bench/bb:1 true >/dev/null; done
  echo "<!-- $c: images -> $($O images | wc -l) lines, ps -a -> $($O ps -a | wc -l) lines -->"
done
race "d1. images (one image)" "" "\$O images"
race "d2. ps -a (3 stopped containers)" "" "\$O ps -a"
race "d3. 20 × images (one image), whole loop" "" "for i in \$(seq 20); do \$O images; done"
race "d4. 20 × ps -a (3 stopped), whole loop" "" "for i in \$(seq 20); do \$O ps -a; done"
for c in "${CONTENDERS[@]}"; do $(o_of "$c") rm -f p1 p2 p3 >/dev/null 2>&1 || true; done

# e. build (from build_bench): two stages, 200 small files and 20 MB copied
B=$D/build
build_fixture "$B"
export B
# Cold: a fresh store holding only the base (untimed), then build --no-cache.
OFRESH='awk -v c="$D/$C/build" '"'"'index($2, c) == 1 {print $2}'"'"' /proc/mounts | sort -r | xargs -r umount -l; rm -rf "$D/$C/build" && $OB import $B/bb.tar localhost/bench/bb:1'
race "e1. build --no-cache (cold: fresh store with the base only)" "$OFRESH" \
  "\$OB build --no-cache -t bench/app:1 \$B/ctx"
# Nothing changed: one untimed build to fill the cache, then the same build again.
for c in "${CONTENDERS[@]}"; do $(ob_of "$c") build -t bench/app:1 "$B/ctx" >/dev/null 2>&1; done
race "e2. build, nothing changed" "" "\$OB build -t bench/app:1 \$B/ctx"
for c in "${CONTENDERS[@]}"; do
  echo "<!-- $c: bench/app:1 runs -> $($(ob_of "$c") run --rm --network none bench/app:1 2>&1 | tr '\n' ' ') -->"
done

echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "Raw times:"
echo '```'
cat "$D/raw.txt"
echo '```'

# cleanup
for c in "${CONTENDERS[@]}"; do
  for dd in data build; do
    "${BIN[$c]}" -q --data-dir "$D/$c/$dd" ps -a -q 2>/dev/null | xargs -r "${BIN[$c]}" -q --data-dir "$D/$c/$dd" rm -f >/dev/null 2>&1 || true
  done
  umount_under "$D/$c"
done
if ((failed)); then
  echo "ba.sh: some measurements FAILED" >&2
  exit 1
fi
