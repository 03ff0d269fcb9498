# Fixtures the benchmark scripts share (sourced, not run).

# build_fixture DIR: a busybox base (DIR/bb.tar, for `import ... localhost/bench/bb:1`) and a
# build context DIR/ctx: a two-stage Dockerfile (COPY of 200 small files, a RUN, COPY --from,
# COPY of 20 files of 1 MiB random bytes, a RUN, ENV, WORKDIR, CMD) and a `.dockerignore`.
build_fixture() {
  local B=$1
  rm -rf "$B" && mkdir -p "$B/rootfs/bin" "$B/ctx/src" "$B/ctx/assets"
  cp /bin/busybox "$B/rootfs/bin/busybox"
  for t in sh cat wc ls echo mkdir; do ln -s busybox "$B/rootfs/bin/$t"; done
  tar -C "$B/rootfs" -cf "$B/bb.tar" .
  for i in $(seq 0 199); do echo "source file $i" >"$B/ctx/src/f$i.txt"; done
  for i in $(seq 0 19); do head -c 1M /dev/urandom >"$B/ctx/assets/a$i.bin"; done
  printf 'node_modules\n*.tmp\n' >"$B/ctx/.dockerignore"
  cat >"$B/ctx/Dockerfile" <<'DOCKERFILE'
FROM localhost/bench/bb:1 AS build
COPY src/ /src/
RUN cat /src/*.txt | wc -c > /out.txt && mkdir -p /gen && echo generated > /gen/file
FROM localhost/bench/bb:1
ENV APP=bench
COPY --from=build /out.txt /gen/ /app/
COPY assets/ /assets/
RUN ls /assets | wc -l > /app/count
WORKDIR /app
CMD ["cat", "/app/out.txt"]
DOCKERFILE
}
