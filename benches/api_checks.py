#!/usr/bin/env python3
"""Client checks of a Docker Engine API socket, as the Python Docker SDK drives one.

    api_checks.py unix:///PATH IMAGE [--ulimits]

Runs each check against the socket and prints one line per check (`ok NAME` or
`FAIL NAME: why`) and a last line `passed N of M`. IMAGE is a busybox image with every applet
(`busybox --install`), already in the engine's store. `--ulimits` gives every container
`nofile` and `nproc` limits of 1024 (podman needs them on this machine kind, PEERS.md).
benches/compare.sh api-checks runs it against `oci system service` and podman's service;
examples/tests/docker_api.rs runs it against ours. (The one network prune is limited by a
label of this run's own: the network store is the host's, shared with whatever else runs
there.)
"""

import contextlib
import io
import os
import signal
import sys
import tarfile
import time
import traceback

import docker
from docker.errors import APIError, ContainerError, ImageNotFound, NotFound

URL, IMAGE = sys.argv[1], sys.argv[2]
ULIMITS = "--ulimits" in sys.argv[3:]
c = docker.DockerClient(base_url=URL, timeout=60)
api = c.api
PID = str(int(time.time() * 1000) % 100000000)
CHECKS = []


def check(f):
    CHECKS.append(f)
    return f


def name(s):
    return "chk%s%s" % (PID, s)


def opts(kw):
    if ULIMITS:
        kw.setdefault("ulimits", []).extend(
            [docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
             docker.types.Ulimit(name="nproc", soft=1024, hard=1024)])
    kw.setdefault("network_mode", "none")
    return kw


def run(cmd, **kw):
    """Runs IMAGE with cmd to its end and removes it: its output."""
    kw.setdefault("remove", True)
    return c.containers.run(IMAGE, cmd, **opts(kw)).decode()


def bg(n, cmd=("sleep", "300"), **kw):
    return c.containers.run(IMAGE, list(cmd), name=name(n), detach=True, **opts(kw))


@contextlib.contextmanager
def running(n, cmd=("sleep", "300"), **kw):
    """A container of bg(), removed when the block ends."""
    k = bg(n, cmd, **kw)
    try:
        yield k
    finally:
        gone(n)


def gone(*names):
    for n in names:
        try:
            c.containers.get(name(n)).remove(force=True)
        except NotFound:
            pass


def until(f, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if f():
            return True
        time.sleep(0.1)
    return False


def expect(v, want):
    assert v == want, "got %r, want %r" % (v, want)


@check
def ping():
    assert c.ping()

@check
def version():
    assert c.version()["ApiVersion"]

@check
def info():
    i = c.info()
    assert "Containers" in i and "Images" in i

@check
def image_list():
    assert any(IMAGE in t or IMAGE.split("/")[-1] in t for i in c.images.list() for t in i.tags)

@check
def image_inspect():
    assert c.images.get(IMAGE).id.startswith("sha256:")

@check
def image_history():
    assert len(c.images.get(IMAGE).history()) >= 1

@check
def image_tag_and_untag():
    img = c.images.get(IMAGE)
    assert img.tag("chk/tagged", PID)
    assert c.images.get("chk/tagged:" + PID).id == img.id
    c.images.remove("chk/tagged:" + PID)
    try:
        c.images.get("chk/tagged:" + PID)
        raise AssertionError("still tagged")
    except ImageNotFound:
        pass

@check
def image_missing_is_404():
    try:
        c.images.get("chk/no-such-image:" + PID)
        raise AssertionError("found")
    except ImageNotFound:
        pass

@check
def run_output():
    expect(run(["echo", "hi"]), "hi\n")

@check
def run_exit_code():
    try:
        run(["sh", "-c", "exit 3"])
        raise AssertionError("no error")
    except ContainerError as e:
        expect(e.exit_status, 3)

@check
def run_env():
    expect(run(["sh", "-c", "echo $FOO"], environment={"FOO": "bar"}), "bar\n")

@check
def run_env_keeps_path():
    assert "/bin" in run(["sh", "-c", "echo $PATH"])

@check
def run_workdir():
    expect(run(["pwd"], working_dir="/tmp"), "/tmp\n")

@check
def run_user():
    expect(run(["id", "-u"], user="1000"), "1000\n")

@check
def run_hostname():
    expect(run(["hostname"], hostname="chkhost"), "chkhost\n")

@check
def run_entrypoint():
    expect(run(["hi"], entrypoint=["echo"]), "hi\n")

@check
def run_command_string():
    expect(run("echo one two"), "one two\n")

@check
def run_stderr_apart():
    out = c.containers.run(IMAGE, ["sh", "-c", "echo out; echo err >&2"], stdout=False,
                           stderr=True, remove=True, **opts({})).decode()
    expect(out, "err\n")

@check
def run_labels():
    with running("labels", labels={"chk.team": "a"}) as k:
        expect(k.labels.get("chk.team"), "a")

@check
def run_detach_logs():
    with running("logs", ["sh", "-c", "echo started; sleep 300"]) as k:
        assert until(lambda: b"started" in k.logs())

@check
def logs_tail():
    with running("tail", ["sh", "-c", "echo 1; echo 2; echo 3; sleep 300"]) as k:
        assert until(lambda: b"3" in k.logs())
        expect(k.logs(tail=1), b"3\n")

@check
def logs_timestamps():
    with running("ts", ["sh", "-c", "echo x; sleep 300"]) as k:
        assert until(lambda: b"x" in k.logs())
        line = k.logs(timestamps=True).decode()
        assert line[4] == "-" and line.rstrip().endswith(" x"), line

@check
def logs_follow_to_the_end():
    k = c.containers.run(IMAGE, ["sh", "-c", "echo a; sleep 1; echo b"], detach=True,
                         name=name("follow"), **opts({}))
    try:
        expect(b"".join(k.logs(stream=True, follow=True)), b"a\nb\n")
    finally:
        gone("follow")

@check
def list_filter_name():
    bg("fname")
    try:
        expect([x.name for x in c.containers.list(filters={"name": name("fname")})], [name("fname")])
    finally:
        gone("fname")

@check
def list_filter_label():
    bg("flabel", labels={"chk.pick": PID})
    try:
        expect(len(c.containers.list(filters={"label": "chk.pick=" + PID})), 1)
    finally:
        gone("flabel")

@check
def list_all_has_exited():
    k = c.containers.run(IMAGE, ["true"], detach=True, name=name("exited"), **opts({}))
    try:
        k.wait()
        assert any(x.name == name("exited") for x in c.containers.list(all=True, filters={"status": "exited"}))
        assert not any(x.name == name("exited") for x in c.containers.list())
    finally:
        gone("exited")

@check
def stop():
    with running("stop", ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]) as k:
        k.stop(timeout=5)
        k.reload()
        expect(k.status, "exited")

@check
def kill_exit_code():
    with running("kill") as k:
        k.kill()
        expect(k.wait()["StatusCode"], 137)

@check
def kill_with_signal():
    with running("sig", ["sh", "-c", "trap 'exit 5' USR1; while :; do sleep 0.1; done"]) as k:
        time.sleep(0.5)
        k.kill(signal="SIGUSR1")
        expect(k.wait()["StatusCode"], 5)

@check
def restart():
    with running("restart") as k:
        k.restart(timeout=0)
        k.reload()
        expect(k.status, "running")

@check
def pause_unpause():
    with running("pause") as k:
        k.pause()
        k.reload()
        expect(k.status, "paused")
        k.unpause()
        k.reload()
        expect(k.status, "running")

@check
def wait_status():
    k = c.containers.run(IMAGE, ["sh", "-c", "exit 7"], detach=True, name=name("wait"), **opts({}))
    try:
        expect(k.wait()["StatusCode"], 7)
    finally:
        gone("wait")

@check
def rename():
    k = bg("rename")
    try:
        k.rename(name("renamed"))
        expect(c.containers.get(name("renamed")).id, k.id)
    finally:
        gone("rename", "renamed")

@check
def create_then_start():
    k = c.containers.create(IMAGE, ["sleep", "300"], name=name("created"), **opts({}))
    try:
        expect(k.status, "created")
        k.start()
        k.reload()
        expect(k.status, "running")
    finally:
        gone("created")

@check
def name_conflict_is_409():
    bg("dup")
    try:
        try:
            bg("dup")
            raise AssertionError("two of one name")
        except APIError as e:
            expect(e.status_code, 409)
    finally:
        gone("dup")

@check
def remove_running_refused():
    with running("rmrun") as k:
        try:
            k.remove()
            raise AssertionError("removed")
        except APIError as e:
            expect(e.status_code, 409)

@check
def remove_force():
    k = bg("rmf")
    k.remove(force=True)
    try:
        c.containers.get(name("rmf"))
        raise AssertionError("still there")
    except NotFound:
        pass

@check
def missing_container_is_404():
    try:
        c.containers.get(name("nothing"))
        raise AssertionError("found")
    except NotFound:
        pass

@check
def exec_output():
    with running("exec") as k:
        r = k.exec_run(["echo", "in"])
        expect((r.exit_code, r.output), (0, b"in\n"))

@check
def exec_exit_code():
    with running("execcode") as k:
        expect(k.exec_run(["sh", "-c", "exit 4"]).exit_code, 4)

@check
def exec_env_workdir_user():
    with running("execenv") as k:
        r = k.exec_run(["sh", "-c", "echo $A $(pwd) $(id -u)"], environment={"A": "x"},
                       workdir="/tmp", user="1000")
        expect(r.output, b"x /tmp 1000\n")

@check
def exec_tty():
    with running("exectty") as k:
        r = k.exec_run(["sh", "-c", "[ -t 1 ] && echo tty"], tty=True)
        assert b"tty" in r.output, r.output

@check
def exec_detach():
    with running("execd") as k:
        k.exec_run(["sh", "-c", "echo done > /tmp/d"], detach=True)
        assert until(lambda: k.exec_run(["cat", "/tmp/d"]).output == b"done\n")

@check
def top():
    with running("top") as k:
        t = k.top()
        assert t["Titles"] and any("sleep" in " ".join(p) for p in t["Processes"]), t

@check
def stats_once():
    with running("stats") as k:
        s = k.stats(stream=False)
        assert "memory_stats" in s and "cpu_stats" in s

@check
def diff():
    with running("diff", ["sh", "-c", "touch /made; sleep 300"]) as k:
        assert until(lambda: any(d["Path"] == "/made" for d in (k.diff() or [])))

@check
def export():
    with running("export", ["sh", "-c", "echo x > /exported; sleep 300"]) as k:
        time.sleep(0.5)
        data = b"".join(k.export())
        names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
        assert any(n.strip("./") == "exported" for n in names), names[:10]

@check
def get_archive():
    with running("getarc", ["sh", "-c", "echo content > /f; sleep 300"]) as k:
        time.sleep(0.5)
        chunks, stat = k.get_archive("/f")
        t = tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))
        expect(t.extractfile("f").read(), b"content\n")
        expect(stat["name"], "f")

@check
def put_archive():
    with running("putarc") as k:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            ti = tarfile.TarInfo("put.txt")
            ti.size = 3
            t.addfile(ti, io.BytesIO(b"abc"))
        assert k.put_archive("/tmp", buf.getvalue())
        expect(k.exec_run(["cat", "/tmp/put.txt"]).output, b"abc")

@check
def commit():
    with running("commit", ["sh", "-c", "echo saved > /s; sleep 300"]) as k:
        time.sleep(0.5)
        img = k.commit(repository="chk/committed", tag=PID)
        out = c.containers.run(img.id, ["cat", "/s"], remove=True, **opts({}))
        expect(out, b"saved\n")
        c.images.remove(img.id, force=True)

@check
def volume_lifecycle():
    v = c.volumes.create(name("vol"))
    assert any(x.name == name("vol") for x in c.volumes.list())
    expect(c.volumes.get(name("vol")).name, name("vol"))
    v.remove()
    try:
        c.volumes.get(name("vol"))
        raise AssertionError("still there")
    except NotFound:
        pass

@check
def volume_keeps_data():
    c.volumes.create(name("data"))
    try:
        run(["sh", "-c", "echo kept > /d/f"], volumes={name("data"): {"bind": "/d", "mode": "rw"}})
        expect(run(["cat", "/d/f"], volumes={name("data"): {"bind": "/d", "mode": "ro"}}), "kept\n")
    finally:
        c.volumes.get(name("data")).remove(force=True)

@check
def bind_mount():
    import tempfile
    d = tempfile.mkdtemp()
    open(d + "/h", "w").write("host\n")
    expect(run(["cat", "/h/h"], volumes={d: {"bind": "/h", "mode": "ro"}}), "host\n")

@check
def tmpfs_mount():
    assert "tmpfs" in run(["sh", "-c", "grep ' /scratch ' /proc/mounts"], tmpfs={"/scratch": ""})

@check
def read_only_root():
    out = run(["sh", "-c", "touch /x 2>/dev/null && echo wrote || echo refused"], read_only=True)
    expect(out, "refused\n")

@check
def network_lifecycle():
    n = c.networks.create(name("net"))
    try:
        assert any(x.name == name("net") for x in c.networks.list())
        expect(c.networks.get(n.id).name, name("net"))
    finally:
        n.remove()

@check
def network_names_and_aliases():
    n = c.networks.create(name("net2"))
    try:
        k = c.containers.run(IMAGE, ["sleep", "300"], name=name("srv"), detach=True,
                             network=name("net2"), **dict(opts({}), network_mode=None))
        n.disconnect(k)
        n.connect(k, aliases=["chkdb"])
        out = c.containers.run(IMAGE, ["sh", "-c", "ping -c1 -W5 %s >/dev/null && ping -c1 -W5 chkdb >/dev/null && echo ok" % name("srv")],
                               network=name("net2"), remove=True, **dict(opts({}), network_mode=None))
        expect(out, b"ok\n")
    finally:
        gone("srv")
        n.remove()

@check
def resource_fields():
    k = c.containers.create(IMAGE, ["sh", "-c", "cat /proc/self/oom_score_adj"], name=name("res"),
                            cpu_shares=512, cpu_period=50000, cpu_quota=25000, cpuset_cpus="0",
                            mem_limit="64m", mem_reservation="32m", oom_score_adj=300, **opts({}))
    try:
        h = api.inspect_container(k.id)["HostConfig"]
        got = (h["CpuShares"], h["CpuPeriod"], h["CpuQuota"], h["CpusetCpus"],
               h["MemoryReservation"], h["OomScoreAdj"])
        assert got == (512, 50000, 25000, "0", 32 << 20, 300), got
        k.start()
        k.wait(timeout=30)
        expect(k.logs(), b"300\n")
    finally:
        gone("res")

@check
def internal_network_and_refused_options():
    n = c.networks.create(name("internal"), internal=True)
    try:
        assert api.inspect_network(n.id)["Internal"] is True
        out = run(["sh", "-c", "ip route | grep -c default || true"],
                  **dict(opts({}), network_mode=None, network=n.name))
        expect(out, "0\n")
    finally:
        n.remove()
    try:
        c.networks.create(name("opts"), options={"com.docker.network.bridge.name": "x0"})
        raise AssertionError("driver options that are not acted on must be refused")
    except APIError as e:
        assert e.status_code == 400, e

@check
def static_addresses():
    # compose's ipv4_address: at create (EndpointSettings.IPAMConfig) and at connect.
    third = 100 + int(PID) % 100
    ipam = docker.types.IPAMConfig(pool_configs=[
        docker.types.IPAMPool(subnet="10.241.%d.0/24" % third)])
    n = c.networks.create(name("fixed"), ipam=ipam)
    n2 = c.networks.create(name("fixed2"), ipam=docker.types.IPAMConfig(pool_configs=[
        docker.types.IPAMPool(subnet="10.242.%d.0/24" % third)]))
    try:
        netcfg = api.create_networking_config({
            n.name: api.create_endpoint_config(ipv4_address="10.241.%d.77" % third)})
        cid = api.create_container(IMAGE, ["sleep", "300"], name=name("fixedc"),
                                   host_config=api.create_host_config(**dict(opts({}), network_mode=n.name)),
                                   networking_config=netcfg)["Id"]
        api.start(cid)
        n2.connect(cid, ipv4_address="10.242.%d.88" % third)
        nets = api.inspect_container(cid)["NetworkSettings"]["Networks"]
        assert nets[n.name]["IPAddress"] == "10.241.%d.77" % third, nets
        k = c.containers.run(IMAGE, ["sh", "-c", "cat /sys/class/net/eth0/address"],
                             mac_address="02:42:0a:0b:0c:0d", network=n.name, detach=True,
                             **dict(opts({}), network_mode=None))
        k.wait(timeout=30)
        expect(k.logs(), b"02:42:0a:0b:0c:0d\n")
        k.remove(force=True)
        assert nets[n2.name]["IPAddress"] == "10.242.%d.88" % third, nets
    finally:
        gone("fixedc")
        n.remove()
        n2.remove()

@check
def bridge_address():
    k = c.containers.run(IMAGE, ["sleep", "300"], name=name("ip"), detach=True, **dict(opts({}), network_mode="bridge"))
    try:
        k.reload()
        nets = k.attrs["NetworkSettings"]["Networks"]
        assert any(v.get("IPAddress") for v in nets.values()), nets
    finally:
        gone("ip")

@check
def published_port():
    import socket
    k = c.containers.run(IMAGE, ["sh", "-c", "mkdir /w; echo page > /w/index.html; exec httpd -f -p 8080 -h /w"],
                         name=name("web"), detach=True, ports={"8080/tcp": None},
                         **dict(opts({}), network_mode="bridge"))
    try:
        k.reload()
        port = int(k.ports["8080/tcp"][0]["HostPort"])

        def get():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return b"page" in s.recv(4096)
            except OSError:
                return False
        assert until(get)
    finally:
        gone("web")

@check
def auto_remove():
    k = c.containers.run(IMAGE, ["true"], name=name("auto"), detach=True, auto_remove=True, **opts({}))
    # The SDK inspects each listed container; one removed between the list and its inspect
    # is a 404 with docker too (hence the SDK's ignore_removed).
    gone = lambda: not any(x.name == name("auto") for x in c.containers.list(all=True, ignore_removed=True))
    assert until(gone)

def health_of(k, want, secs=20):
    """Waits for container k's health status want: its State.Health."""
    def seen():
        k.reload()
        return k.attrs["State"].get("Health", {}).get("Status") == want
    assert until(seen, secs), k.attrs["State"].get("Health")
    return k.attrs["State"]["Health"]

MS = 1000000

@check
def health_healthy():
    with running("hok", healthcheck={"test": ["CMD", "true"], "interval": 300 * MS}) as k:
        h = health_of(k, "healthy")
        expect((h["FailingStreak"], h["Log"][-1]["ExitCode"]), (0, 0))

@check
def health_unhealthy_with_output():
    hc = {"test": ["CMD-SHELL", "echo no; exit 1"], "interval": 300 * MS, "retries": 2}
    with running("hbad", healthcheck=hc) as k:
        h = health_of(k, "unhealthy")
        expect((h["Log"][-1]["ExitCode"], h["Log"][-1]["Output"]), (1, "no\n"))
        assert h["FailingStreak"] >= 2, h

@check
def health_timeout():
    hc = {"test": ["CMD", "sleep", "5"], "interval": 300 * MS, "timeout": 300 * MS, "retries": 1}
    with running("hslow", healthcheck=hc) as k:
        h = health_of(k, "unhealthy")
        expect(h["Log"][0]["ExitCode"], -1)

@check
def health_filter():
    with running("hfil", healthcheck={"test": ["CMD", "true"], "interval": 300 * MS}) as k:
        health_of(k, "healthy")
        names = [x.name for x in c.containers.list(filters={"health": "healthy"}, ignore_removed=True)]
        assert name("hfil") in names, names

@check
def health_none():
    with running("hnone", healthcheck={"test": ["NONE"]}) as k:
        assert "Health" not in k.attrs["State"], k.attrs["State"]

def pid1_cmdline(**kw):
    """/proc/1/cmdline as a container run with kw sees it."""
    return run(["cat", "/proc/1/cmdline"], **kw)

@check
def pid_host():
    expect(run(["readlink", "/proc/self/ns/pid"], pid_mode="host").strip(),
           os.readlink("/proc/self/ns/pid"))

@check
def pid_of_another_container():
    with running("pdonor") as d:
        expect(pid1_cmdline(pid_mode="container:" + d.id), "sleep\x00300\x00")

@check
def ipc_host():
    expect(run(["readlink", "/proc/self/ns/ipc"], ipc_mode="host").strip(),
           os.readlink("/proc/self/ns/ipc"))

@check
def ipc_shareable_and_joined():
    with running("ipcdonor", ("sh", "-c", "echo m > /dev/shm/mark; exec sleep 300"),
                 ipc_mode="shareable") as k:
        time.sleep(0.5)
        out = run(["sh", "-c", "cat /dev/shm/mark; readlink /proc/self/ns/ipc"],
                  ipc_mode="container:" + name("ipcdonor"))
        donor = k.exec_run(["readlink", "/proc/self/ns/ipc"]).output.decode()
        expect(out, "m\n" + donor)
        assert api.inspect_container(k.id)["HostConfig"]["IpcMode"] == "shareable"

@check
def ipc_private_is_its_own():
    ns = run(["readlink", "/proc/self/ns/ipc"]).strip()
    assert ns != os.readlink("/proc/self/ns/ipc"), ns

@check
def pid_and_ipc_in_inspect():
    with running("pimodes", pid_mode="host", ipc_mode="host") as k:
        h = k.attrs["HostConfig"]
        expect((h["PidMode"], h["IpcMode"]), ("host", "host"))

@check
def device_given():
    out = run(["sh", "-c", "echo x > /dev/given && ls -l /dev/given"],
              devices=["/dev/null:/dev/given:rwm"])
    assert out.startswith("c") and "1," in out, out

@check
def device_not_a_device_refused():
    try:
        run(["true"], devices=["/etc/hostname:/dev/x:rwm"])
        raise AssertionError("ran")
    except APIError as e:
        assert e.status_code in (400, 500), e

@check
def get_archive_contents():
    with running("getdot", ["sh", "-c", "mkdir -p /d/s && echo a > /d/a && echo b > /d/s/b; sleep 300"]) as k:
        time.sleep(0.5)
        chunks, _ = k.get_archive("/d/.")
        names = sorted(m.name.rstrip("/") for m in tarfile.open(fileobj=io.BytesIO(b"".join(chunks))))
        expect([n for n in names if n not in (".", "")], ["./a", "./s", "./s/b"])

@check
def archive_of_a_volume():
    vol = name("arcvol")
    with running("arcv", ["sh", "-c", "echo invol > /data/f; sleep 300"],
                 volumes={vol: {"bind": "/data", "mode": "rw"}}) as k:
        time.sleep(0.5)
        chunks, _ = k.get_archive("/data/f")
        t = tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))
        expect(t.extractfile("f").read(), b"invol\n")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tw:
            data = b"put\n"
            info = tarfile.TarInfo("p")
            info.size = len(data)
            tw.addfile(info, io.BytesIO(data))
        assert k.put_archive("/data", buf.getvalue())
        expect(k.exec_run(["cat", "/data/p"]).output, b"put\n")
    c.volumes.get(vol).remove()

@check
def archive_link_target_resolved():
    with running("lnkt", ["sh", "-c", "mkdir -p /x && echo t > /x/f && ln -s ../x/f /x/l; sleep 300"]) as k:
        time.sleep(0.5)
        expect(api.get_archive(k.id, "/x/l")[1]["linkTarget"], "/x/f")

@check
def network_labels():
    n = c.networks.create(name("lnet"), labels={"chk.run": PID})
    try:
        expect(c.networks.get(n.id).attrs["Labels"], {"chk.run": PID})
        found = [x.name for x in c.networks.list(filters={"label": "chk.run=" + PID})]
        expect(found, [name("lnet")])
    finally:
        n.remove()

@check
def network_prune_by_label():
    keep = c.networks.create(name("pkeep"), labels={"chk.run": PID, "keep": "1"})
    c.networks.create(name("pdrop"), labels={"chk.run": PID})
    try:
        got = c.networks.prune(filters={"label": ["chk.run=" + PID], "label!": ["keep"]})
        expect(got["NetworksDeleted"], [name("pdrop")])
    finally:
        keep.remove()

@check
def health_event():
    t0 = int(time.time()) - 1
    with running("hev", healthcheck={"test": ["CMD", "true"], "interval": 300 * MS}) as k:
        health_of(k, "healthy")
    evs = list(api.events(since=t0, until=int(time.time()) + 1, decode=True,
                          filters={"event": "health_status", "container": name("hev")}))
    expect([e["Action"] for e in evs], ["health_status: healthy"])

@check
def cap_drop_all():
    out = run(["sh", "-c", "grep CapEff /proc/self/status"], cap_drop=["ALL"])
    assert out.split()[1].strip("0") == "", out

@check
def privileged():
    out = run(["sh", "-c", "grep CapEff /proc/self/status"], privileged=True)
    assert out.split()[1].strip("0") != "", out

@check
def limits_in_inspect():
    with running("limits", mem_limit="64m", pids_limit=50, nano_cpus=500000000) as k:
        h = k.attrs["HostConfig"]
        expect((h["Memory"], h["PidsLimit"], h["NanoCpus"]), (64 << 20, 50, 500000000))

@check
def update_limits():
    with running("update") as k:
        k.update(mem_limit="32m")
        k.reload()
        expect(k.attrs["HostConfig"]["Memory"], 32 << 20)

@check
def update_restart_policy():
    with running("uppol", cmd=("sh", "-c", "sleep 1; exit 3")) as k:
        k.update(restart_policy={"Name": "on-failure", "MaximumRetryCount": 1})
        k.reload()
        expect(k.attrs["HostConfig"]["RestartPolicy"]["Name"], "on-failure")
        def restarted():
            k.reload()
            return k.attrs["RestartCount"] == 1 and k.attrs["State"]["Status"] == "exited"
        assert until(restarted, 20), (k.attrs["RestartCount"], k.attrs["State"])

@check
def restart_policy():
    with running("policy", restart_policy={"Name": "on-failure", "MaximumRetryCount": 2}) as k:
        expect(k.attrs["HostConfig"]["RestartPolicy"]["Name"], "on-failure")

@check
def tty_logs():
    k = c.containers.run(IMAGE, ["sh", "-c", "[ -t 1 ] && echo tty"], tty=True, detach=True, name=name("tty"), **opts({}))
    try:
        k.wait()
        assert b"tty" in k.logs()
    finally:
        gone("tty")

@check
def resize():
    k = c.containers.run(IMAGE, ["sh", "-c", "while :; do stty size; sleep 0.2; done"], tty=True,
                         detach=True, name=name("resize"), **opts({}))
    try:
        k.resize(30, 100)
        assert until(lambda: b"30 100" in k.logs()), k.logs()[-200:]
    finally:
        gone("resize")

@check
def extra_hosts():
    assert "10.9.8.7\tchk.local" in run(["cat", "/etc/hosts"], extra_hosts={"chk.local": "10.9.8.7"})

@check
def dns_servers():
    assert "nameserver 9.9.9.9" in run(["cat", "/etc/resolv.conf"], dns=["9.9.9.9"])

@check
def sysctls():
    expect(run(["cat", "/proc/sys/kernel/shmmax"], sysctls={"kernel.shmmax": "1048576"}), "1048576\n")

@check
def ulimits():
    kw = opts({})
    kw["ulimits"] = [docker.types.Ulimit(name="nofile", soft=512, hard=1024),
                     docker.types.Ulimit(name="nproc", soft=1024, hard=1024)]
    expect(c.containers.run(IMAGE, ["sh", "-c", "ulimit -n"], remove=True, **kw), b"512\n")

@check
def shm_size():
    assert "size=8192k" in run(["sh", "-c", "grep /dev/shm /proc/mounts"], shm_size="8m")

@check
def group_add():
    assert "1234" in run(["id", "-G"], group_add=["1234"]).split()

@check
def attach_logs():
    k = c.containers.run(IMAGE, ["echo", "attached"], detach=True, name=name("attach"), **opts({}))
    try:
        k.wait()
        expect(k.attach(stdout=True, stderr=True, stream=False, logs=True), b"attached\n")
    finally:
        gone("attach")

@check
def inspect_started_at():
    with running("started") as k:
        k.reload()
        s = k.attrs["State"]["StartedAt"]
        assert s.startswith("20") and "T" in s, s
        assert k.attrs["State"]["Running"]

@check
def prune_containers():
    k = c.containers.run(IMAGE, ["true"], detach=True, name=name("prunec"), **opts({}))
    k.wait()
    r = c.containers.prune()
    assert k.id in (r.get("ContainersDeleted") or []), r

@check
def prune_volumes():
    # docker's since API 1.42: anonymous volumes only, unless all=true.
    c.volumes.create(name("prunev"))
    c.volumes.create(name("prunea"), labels={"com.docker.volume.anonymous": ""})
    r = c.volumes.prune()
    assert name("prunea") in (r.get("VolumesDeleted") or []), r
    assert name("prunev") not in (r.get("VolumesDeleted") or []), r
    r = c.volumes.prune(filters={"all": "true"})
    assert name("prunev") in (r.get("VolumesDeleted") or []), r

@check
def bind_volume_of_driver_opts():
    # compose's driver_opts {type: none, o: bind, device: DIR}: the volume is that directory,
    # and removing the volume leaves its files.
    import tempfile
    d = tempfile.mkdtemp(prefix="chkvol")
    with open(os.path.join(d, "f"), "w") as fh:
        fh.write("host\n")
    v = c.volumes.create(name("bindvol"), driver="local",
                         driver_opts={"type": "none", "o": "bind", "device": d})
    try:
        out = run(["sh", "-c", "cat /v/f; echo c > /v/g"], volumes={v.name: {"bind": "/v", "mode": "rw"}})
        expect(out, "host\n")
        assert os.path.exists(os.path.join(d, "g"))
    finally:
        v.remove()
    assert open(os.path.join(d, "f")).read() == "host\n"
    try:
        c.volumes.create(name("nfsvol"), driver_opts={"type": "nfs", "device": ":/x"})
        raise AssertionError("an nfs volume must be refused, not made plain")
    except APIError as e:
        assert e.status_code in (400, 500), e

@check
def volume_list_filters():
    # compose lists (and `down -v` removes) its project's volumes by label.
    vols = [c.volumes.create(name("vlabel"), labels={"com.docker.compose.project": name("p")}),
            c.volumes.create(name("vother"))]
    try:
        got = [v.name for v in c.volumes.list(
            filters={"label": "com.docker.compose.project=" + name("p")})]
        assert got == [name("vlabel")], got
    finally:
        for v in vols:
            v.remove()

@check
def network_id_in_container_settings():
    # compose v2 recreates a container whose NetworkID is not its network's Id.
    net = c.networks.create(name("netid"))
    try:
        ctr = c.containers.create(IMAGE, ["true"], name=name("netidc"), network=net.name)
        ctr.reload()
        got = ctr.attrs["NetworkSettings"]["Networks"][net.name]["NetworkID"]
        assert got == net.id, (got, net.id)
    finally:
        gone("netidc")
        net.remove()

@check
def system_df():
    d = api.df()
    assert "Images" in d and "Containers" in d

@check
def events_of_a_run():
    since = time.time() - 1
    run(["true"], name=name("events"))
    ev = list(api.events(since=since, until=time.time() + 1, decode=True,
                         filters={"container": name("events")}))
    actions = [e.get("Action") or e.get("status") for e in ev]
    assert "start" in actions and "die" in actions, actions

@check
def save_and_load():
    data = b"".join(c.images.get(IMAGE).save(named=True))
    assert len(data) > 1024
    loaded = c.images.load(data)
    assert loaded

@check
def build_with_args():
    df = "FROM %s\nARG WHO\nRUN echo built-for-$WHO > /who\nCMD [\"cat\", \"/who\"]\n" % IMAGE
    img, _ = c.images.build(fileobj=io.BytesIO(df.encode()), tag="chk/built:" + PID,
                            buildargs={"WHO": "sdk"}, rm=True)
    try:
        expect(c.containers.run(img.id, remove=True, **opts({})), b"built-for-sdk\n")
    finally:
        c.images.remove(img.id, force=True)


@check
def start_and_stop_not_modified():
    with running("nm") as k:
        expect(api._post(api._url("/containers/{0}/start", k.id)).status_code, 304)
        k.stop(timeout=0)
        expect(api._post(api._url("/containers/{0}/stop", k.id)).status_code, 304)

@check
def stats_stream():
    with running("sst") as k:
        readings = []
        for r in k.stats(stream=True, decode=True):
            readings.append(r)
            if len(readings) == 2:
                break
        assert readings[1]["precpu_stats"]["cpu_usage"]["total_usage"] > 0, readings[1]
        assert readings[1]["read"] != readings[0]["read"]

@check
def exec_resize():
    with running("exr") as k:
        e = api.exec_create(k.id, ["sh", "-c", "sleep 1; stty size"], tty=True)
        out = api.exec_start(e["Id"], tty=True, stream=True)
        api.exec_resize(e["Id"], height=33, width=77)
        expect(b"".join(out).strip(), b"33 77")

@check
def build_target_nocache_pull():
    df = ("FROM %s AS first\nRUN echo one > /stage\n"
          "FROM first AS second\nRUN echo two > /stage\nCMD [\"cat\", \"/stage\"]\n") % IMAGE
    tag = "chk/target:" + PID
    try:
        c.images.build(fileobj=io.BytesIO(df.encode()), tag=tag, target="first", rm=True)
        expect(c.containers.run(tag, ["cat", "/stage"], remove=True, **opts({})), b"one\n")
        # nocache runs the step again: a new layer, so a new image id.
        first = c.images.get(tag).id
        c.images.build(fileobj=io.BytesIO(df.encode()), tag=tag, target="first", rm=True)
        expect(c.images.get(tag).id, first)
        c.images.build(fileobj=io.BytesIO(df.encode()), tag=tag, target="first", rm=True, nocache=True)
        assert c.images.get(tag).id != first
        # pull with a base that is in no registry: the local one is used, as docker's
        # classic builder does when the pull fails for a local image.
        c.images.build(fileobj=io.BytesIO(b"FROM scratch\nLABEL k=v\n"), tag=tag, pull=True, rm=True)
        expect(c.images.get(tag).labels.get("k"), "v")
    finally:
        c.images.remove(tag, force=True)

@check
def put_archive_link_stays_inside():
    marker = "chk-put-link-%s" % PID
    with running("pal") as k:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            link = tarfile.TarInfo("out")
            link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
            t.addfile(link)
            f = tarfile.TarInfo("out/" + marker)
            f.size = 2
            t.addfile(f, io.BytesIO(b"x\n"))
        try:
            k.put_archive("/", buf.getvalue())
        except docker.errors.APIError:
            pass
        assert not os.path.exists("/tmp/" + marker), "a tar entry went through a link to the host"


class Stuck(Exception):
    """A check that took longer than its minutes."""


def stuck(*_):
    raise Stuck("no answer in %d s" % LIMIT)


LIMIT = 120


def main():
    passed = 0
    signal.signal(signal.SIGALRM, stuck)
    for f in CHECKS:
        try:
            signal.alarm(LIMIT)
            f()
            signal.alarm(0)
            passed += 1
            print("ok", f.__name__, flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is a failed check
            signal.alarm(0)
            why = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            print("FAIL", f.__name__ + ":", why[:300], flush=True)
            if "-v" in sys.argv:
                traceback.print_exc()
    print("passed %d of %d" % (passed, len(CHECKS)))


main()
