"""`make run` stopped by a signal to make alone (issue 8): started as a user starts it (make
as a child in its own process group, here with ports chosen free on loopback and the
suite's mock as upstream), once it serves /health on both services, a SIGTERM (or SIGINT,
SIGHUP) to the make process alone must stop every process it started, the web server and
the responders included, and give the ports back. Runs behind nginx and behind lighttpd
(`make run SERVER=lighttpd`).

make passes SIGTERM on to its child only, and on SIGINT/SIGHUP it passes nothing and waits
for the child; run.sh (exec'd by the recipe) traps the signals and watches make. Bounds are
generous (a slow 2-core box); the build is the suite's own (BUILD= the one under test), so
make finds it up to date and does not rebuild."""

from harness import *

GRACE = 10  # SHUTDOWN_GRACE of the run's responders, seconds


def _procs():
    """{pid: (ppid, pgid, state, starttime, comm)} of every process now."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        f = st[st.rindex(")") + 2:].split()
        out[int(d)] = (int(f[1]), int(f[2]), f[0], int(f[19]), comm)
    return out


def _started_by(root):
    """{(pid, starttime): comm} of the processes `root` started: its process group and its
    descendants (by parent), so a process that left the group is still counted."""
    procs = _procs()
    mine = {pid for pid, p in procs.items() if p[1] == root}
    mine.add(root)
    grew = True
    while grew:
        kids = {pid for pid, p in procs.items() if p[0] in mine and pid not in mine}
        mine |= kids
        grew = bool(kids)
    return {(pid, procs[pid][3]): procs[pid][4] for pid in mine if pid in procs}


def _left(seen, root):
    """Of `seen` and of `root`'s process group, the processes still running (an exited
    process waiting to be reaped, a zombie, holds nothing and is not counted)."""
    procs = _procs()
    left = {}
    for (pid, start), comm in seen.items():
        p = procs.get(pid)
        if p and p[3] == start and p[2] != "Z":
            left[pid] = comm
    for pid, p in procs.items():
        if p[1] == root and p[2] != "Z":
            left[pid] = p[4]
    return left


def _port_free(port):
    """Nothing listens on 127.0.0.1:port (a bind succeeds; SO_REUSEADDR ignores TIME_WAIT)."""
    sk = socket.socket()
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sk.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        sk.close()


def _health(port):
    try:
        r = request(port, "GET", "/health", timeout=5)
        return r.status == 200 and r.json().get("service")
    except (OSError, ValueError):
        return None


def _make_run_then_signal(s, sig, stream=False):
    web = s.web
    if not shutil.which(web):
        raise Skip("%s is not installed" % web)
    d = os.path.join(s.tmp, "make-run-%s-%s" % (web, signal.Signals(sig).name.lower()))
    os.makedirs(d, exist_ok=True)
    env_file = os.path.join(d, "run.env")
    with open(env_file, "w") as f:  # the run's own .env: a developer's ./.env does not apply
        f.write("# make run under test_makerun\nLOG_FORMAT=json\n")
    ports = {"claude": free_port(), "codex": free_port()}
    env = minimal_env()
    env.update(CLAUDE_SERVICE_PORT=str(ports["claude"]), CODEX_SERVICE_PORT=str(ports["codex"]),
               ANTHROPIC_BASE_URL=s.mock.base, OPENAI_BASE_URL=s.mock.base + "/v1", SERVER=web,
               CCPROXY_ENV_FILE=env_file, CCPROXY_RUN_DIR=os.path.join(d, "run"),
               SHUTDOWN_GRACE=str(GRACE), HTTP_TIMEOUT="30")
    bd = bin_dir().parent
    argv = ["make", "-s", "--no-print-directory", "run", "BUILD=%s" % bd]
    if bd.name == "san":
        argv.append("SANITIZE=1")
    out = open(os.path.join(d, "make.out"), "wb")
    p = subprocess.Popen(argv, cwd=str(REPO), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                         start_new_session=True)
    seen = {}
    c = mid = None

    def tail():
        out.flush()
        return Stack.file_tail(os.path.join(d, "make.out"), 1200)
    try:
        def up():
            if p.poll() is not None:
                raise AssertionError("make run exited (rc %s) before serving: %s" % (p.returncode, tail()))
            return _health(ports["claude"]) and _health(ports["codex"])
        wait_for(up, 180, interval=0.2, what="make run to serve /health on both ports")
        eq((_health(ports["claude"]), _health(ports["codex"])), ("claude-service", "codex-service"),
           "/health of the two services")
        if stream:  # a client streaming when make is stopped
            mid = new_id("makerun")
            c = Conn(ports["claude"], timeout=30)
            c.send_request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="gate=" + mid),
                           message_body(stream=True))
            c.read_head()
            eq(c.status, 200, "the stream's status")
            check(c.read_event() is not None, "the stream's first event")
            wait_record(s, mid, "gate_waiting", 15)
        seen = _started_by(p.pid)
        comms = sorted(seen.values())
        for want in ("ccproxy-claude", "ccproxy-codex", web):
            check(want in comms, "no %s among the processes make run started: %s", want, comms)

        os.kill(p.pid, sig)  # make alone, not its group
        try:
            p.wait(GRACE + 60)
        except subprocess.TimeoutExpired:
            raise AssertionError("make was still running %d s after %s: %s; left: %s" % (
                GRACE + 60, signal.Signals(sig).name, tail(), _left(seen, p.pid)))
        try:
            wait_for(lambda: not _left(seen, p.pid), 30, interval=0.2, what="the stack to stop")
        except HarnessError:
            raise AssertionError("30 s after make exited (%s), still running: %s; make run said: %s" % (
                signal.Signals(sig).name, _left(seen, p.pid), tail()))
        busy = [n for n, port in ports.items() if not _port_free(port)]
        check(not busy, "ports still taken after make run stopped: %s", ["%s:%d" % (n, ports[n]) for n in busy])
        note = ""
        if c is not None:  # the stream ended with the stack (cut: the web server closed it)
            try:
                c.read_all()
                note = ", the open stream ended %s" % ("cleanly" if c.clean_end else "cut")
            except (OSError, EOFError):
                note = ", the open stream was cut"
        return "%s: %d processes stopped, ports free%s" % (signal.Signals(sig).name, len(seen), note)
    finally:
        if c is not None:
            c.close()
        if mid is not None:
            s.mock.release(mid, all=True)
        # Whatever a failure left: make's process group at once, while it has members (one
        # signal, so nginx cannot respawn a worker in between), then each process seen
        # earlier that is still the same process (same start time).
        procs = _procs()
        if p.poll() is None or any(q[1] == p.pid for q in procs.values()):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for (pid, start) in seen:
            if pid in procs and procs[pid][3] == start and procs[pid][2] != "Z":
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        out.close()


def test_make_run_sigterm_to_make_stops_everything(s):
    """SIGTERM to make alone, a stream open: the web server, both responders and run.sh
    exit, the ports are free."""
    return _make_run_then_signal(s, signal.SIGTERM, stream=True)


test_make_run_sigterm_to_make_stops_everything.timeout = 300


def test_make_run_sigint_sighup_to_make_stop_everything(s):
    """SIGINT, then (a new run) SIGHUP, to make alone: make passes neither on and waits for
    its child; run.sh sees make's handler taken and stops the stack all the same."""
    notes = [_make_run_then_signal(s, sig) for sig in (signal.SIGINT, signal.SIGHUP)]
    return "; ".join(notes)


test_make_run_sigint_sighup_to_make_stop_everything.timeout = 400
