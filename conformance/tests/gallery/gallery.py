#!/usr/bin/env python3
"""Conformance self-test gallery: plugins written from the protocol, in many
shapes. Standard library only.

usage: gallery.py MODE

Good shapes (conformant; at most a recommended check fails):
good               ops ping, config.mutate, build.run, launch.plan, the stream
                   ticks and the command hello; build.run writes built.txt when
                   NOT dry_run, like a real build
fragile            exits on a line that is not JSON (like most plugins that call
                   json.loads per line)           -> robustness.invalid-json only
streams-in-ops     its stream op is listed only in capabilities.ops, and every
                   start reuses the stream id "s1"
follow             a log-follow stream that ends only when stdin closes
out-of-order       answers the requests of each read in reverse order
stderr-flood       20 MB on stderr (half before the handshake, half on build.run)
big-output         8 MB outputs (build.run artifacts, launch.plan env)
slow               every declared op takes 150 ms (within the deadline)
anonymous          answers requests without an id, and invalid JSON, with
                   request_id ""
children           starts a helper process and stops it when stdin closes
single-instance    refuses to start while another instance runs (a lock in
                   GALLERY_STATE), as plugins holding a port or a lock do;
                   150 ms per op, so that instances do overlap

Bad shapes (each fails exactly the checks named):
handshake-version  protocol_version "v1"                     -> handshake.version
handshake-never    never writes a handshake           -> handshake.first-frame, .in-time
stdout-chatty      a text line before each answer            -> stdout.frames-only
unknown-op-runtime unknown ops answered with E_RUNTIME       -> unknown-op.unsupported
unknown-op-slow    unknown ops refused after 800 ms          -> unknown-op.fast
timeout-hang       the op "slow" blocks the plugin forever   -> timeout.slow
response-twice     every request answered twice              -> response.exactly-one
response-malformed launch.plan answered with "ok": "yes"      -> stdout.frames-only
response-wrong-id  every answer carries request_id "nope"    -> response.id-echoed
response-request   sends a request frame after its handshake -> response.no-unsolicited
schema-bad         launch.plan answers {"services": "none"}  -> schema.launch.plan
dry-run-writes     build.run writes a file despite dry_run   -> dry-run.repo-unchanged
determinism-counter ping answers a counter                   -> determinism.ping
repo-root-cwd      launch.plan names the process cwd         -> repo-root.follows-ctx
repo-root-config   config.mutate reads gallery.cfg from the process cwd
                                                             -> repo-root.follows-ctx
robustness-blank   crashes on a blank line                   -> robustness.blank-lines
robustness-noid    crashes on a request without request_id   -> robustness.missing-request-id
robustness-types   crashes on an input that is not an object -> robustness.wrong-input-types
concurrency-drop   answers only the last request of each read -> concurrency.pipelined
streams-after-end  an event after end                        -> streams.nothing-after-end
streams-no-end     never ends its stream (not even at EOF)   -> streams.end-arrives
streams-wrong-id   events carry another stream id            -> streams.events-carry-id
streams-undeclared ticks listed in capabilities.streams only -> streams.stream-id
shutdown-ignore-eof keeps running after stdin closes         -> shutdown.exits-on-eof
shutdown-orphan    a child in its own session survives it    -> shutdown.no-leftovers
shutdown-double-fork a double-forked grandchild survives it  -> shutdown.no-leftovers
shutdown-no-env    the same grandchild, started with an empty environment
                                                             -> shutdown.no-leftovers
commands-bad       command.run answers without exit_code     -> commands.hello
declared-unsupported launch.plan is declared, answered E_UNSUPPORTED
                                                             -> schema.launch.plan

For the suite's own limits:
hang-all           handshakes, then never answers anything (the run must still end)
event-flood        floods GALLERY_FLOOD (default 1000000) unsolicited events
                   right after its handshake, in the first process only when
                   GALLERY_STATE names a directory
hang-with-child    starts a child in its own session, and "slow" hangs (for
                   the signal test)

With GALLERY_LOG set, every mode appends what it reads to that file, one
line per input line: the op, "noid <op>", "invalid" or "blank".
"""
import json
import os
import subprocess
import sys
import time

MODE = sys.argv[1]
OPS = ["ping", "config.mutate", "build.run", "launch.plan", "ticks", "command.run"]
STREAMS = ["ticks"]
if MODE in ("timeout-hang", "hang-with-child"):
    OPS.append("slow")
if MODE == "streams-in-ops":
    STREAMS = []
if MODE == "follow":
    OPS.append("follow")
if MODE == "streams-undeclared":
    OPS.remove("ticks")
counter = 0
follows = []


def send(frame):
    text = json.dumps(frame) + "\n"
    if MODE == "response-twice" and frame["type"] == "response":
        text += text
    if MODE == "stdout-chatty" and frame["type"] == "response":
        text = "handling a request...\n" + text
    data = text.encode()
    while data:
        data = data[os.write(1, data):]


def respond(rid, body):
    if MODE == "response-wrong-id":
        rid = "nope"
    body.update({"type": "response", "request_id": rid})
    send(body)


def ok(rid, output):
    respond(rid, {"ok": True, "output": output})


def fail(rid, code, message):
    respond(rid, {"ok": False, "error": {"code": code, "message": message}})


def spawn_detached():
    """A child in its own session: it leaves the plugin's process group."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def double_fork(env=None):
    """A grandchild whose parent exits at once: it leaves the plugin's tree
    (with env={}, it also loses every mark in its environment)."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            if env is None:
                os.execvp("sleep", ["sleep", "300"])
            os.execve("/bin/sleep", ["sleep", "300"], env)
        os._exit(0)
    os.wait()


def handle(request):
    global counter
    rid, op, ctx = request["request_id"], request.get("op"), request.get("ctx") or {}
    data = request.get("input")
    repo = ctx.get("repo_root") or os.getcwd()
    if op not in OPS:
        if MODE == "unknown-op-runtime":
            return fail(rid, "E_RUNTIME", "no such op")
        if MODE == "unknown-op-slow":
            time.sleep(0.8)
        return fail(rid, "E_UNSUPPORTED", "op %r is not supported" % op)
    if MODE == "declared-unsupported" and op == "launch.plan":
        return fail(rid, "E_UNSUPPORTED", "not today")
    if MODE in ("slow", "single-instance"):
        time.sleep(0.15)
    if op == "slow":
        while True:
            time.sleep(3600)
    if not isinstance(data, dict):
        if MODE == "robustness-types":
            data.get("config")  # AttributeError: the plugin dies
        return fail(rid, "E_RUNTIME", "input must be an object")
    if op == "ping":
        if MODE == "determinism-counter":
            counter += 1
            return ok(rid, {"count": counter})
        return ok(rid, {"pong": True})
    if op == "config.mutate":
        patch = {"gallery.mode": MODE}
        if MODE == "repo-root-config":
            # Wrong on purpose: relative to the process cwd, not ctx.repo_root.
            if os.path.exists("gallery.cfg"):
                with open("gallery.cfg") as cfg:
                    patch["gallery.cfg"] = cfg.read().strip()
        return ok(rid, {"config_patch": {"set": patch}})
    if op == "build.run":
        if MODE == "dry-run-writes" or not ctx.get("dry_run"):
            with open(os.path.join(repo, "built.txt"), "w") as out:
                out.write("built\n")
        if MODE == "stderr-flood":
            os.write(2, b"x" * (10 * 1024 * 1024) + b"\n")
        artifacts = {"log": "y" * (8 * 1024 * 1024)} if MODE == "big-output" else {}
        return ok(rid, {"steps": [{"name": "all", "ok": True, "duration_ms": 1}], "artifacts": artifacts})
    if op == "launch.plan":
        if MODE == "response-malformed":
            return respond(rid, {"ok": "yes", "output": {"services": []}})
        if MODE == "schema-bad":
            return ok(rid, {"services": "none"})
        where = os.getcwd() if MODE == "repo-root-cwd" else repo
        service = {"name": "app", "cwd": where, "command": ["true"]}
        if MODE == "big-output":
            service["env"] = {"BIG": "z" * (8 * 1024 * 1024)}
        return ok(rid, {"services": [service]})
    if op == "ticks":
        sid = "s1" if MODE == "streams-in-ops" else "ticks-" + rid
        ok(rid, {"stream_id": sid})
        event_id = "someone-else" if MODE == "streams-wrong-id" else sid
        for n in range(3):
            send({"type": "event", "stream_id": event_id, "event": "tick", "fields": {"n": n}})
        if MODE != "streams-no-end":
            send({"type": "event", "stream_id": event_id, "event": "end", "ok": True})
        if MODE == "streams-after-end":
            send({"type": "event", "stream_id": sid, "event": "tick", "fields": {"n": 99}})
        return
    if op == "follow":
        sid = "follow-" + rid
        ok(rid, {"stream_id": sid})
        send({"type": "event", "stream_id": sid, "event": "log", "message": "following"})
        follows.append(sid)
        return
    if op == "command.run":
        if MODE == "commands-bad":
            return ok(rid, {"done": True})
        if data.get("name") != "hello":
            return fail(rid, "E_UNSUPPORTED", "no such command")
        return ok(rid, {"exit_code": 0})


def log(what):
    path = os.environ.get("GALLERY_LOG")
    if path:
        with open(path, "a") as out:
            out.write(what + "\n")


def batches():
    """Request lines as they arrive, one list per read."""
    pending = b""
    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield complete


def flood():
    state = os.environ.get("GALLERY_STATE")
    if state:
        try:
            os.close(os.open(os.path.join(state, "flooded"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
    count = int(os.environ.get("GALLERY_FLOOD", "1000000"))
    line = (json.dumps({"type": "event", "stream_id": "nobody-asked", "event": "noise"}) + "\n").encode()
    chunk = line * 1000
    for _ in range(count // 1000):
        data = chunk
        while data:
            data = data[os.write(1, data):]


def single_instance():
    import fcntl
    lock = open(os.path.join(os.environ["GALLERY_STATE"], "lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit("gallery: another instance is running")
    return lock


def main():
    if MODE == "single-instance":
        held = single_instance()  # noqa: F841 (held until exit)
    if MODE == "handshake-never":
        time.sleep(3600)
    if MODE == "stderr-flood":
        os.write(2, b"e" * (10 * 1024 * 1024) + b"\n")
    version = "v1" if MODE == "handshake-version" else "v2"
    send({"type": "handshake", "protocol_version": version, "plugin_name": "gallery-" + MODE,
          "capabilities": {"ops": OPS, "streams": STREAMS,
                           "commands": [{"name": "hello", "help": "says hello"}]}})
    helper = None
    log("pid %d" % os.getpid())
    if MODE in ("shutdown-orphan", "hang-with-child"):
        log("child %d" % spawn_detached().pid)
    if MODE == "shutdown-double-fork":
        double_fork()
    if MODE == "shutdown-no-env":
        double_fork(env={})
    if MODE == "children":
        helper = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
    if MODE == "response-request":
        send({"type": "request", "request_id": "from-plugin", "op": "ping", "ctx": {}, "input": {}})
    if MODE == "event-flood":
        flood()
    for batch in batches():
        if MODE == "hang-all":
            continue
        if MODE == "concurrency-drop":
            batch = batch[-1:]
        if MODE == "out-of-order":
            batch = list(reversed(batch))
        for raw in batch:
            if not raw.strip():
                log("blank")
                if MODE == "robustness-blank":
                    json.loads(raw)  # raises: the plugin dies
                continue
            try:
                request = json.loads(raw)
            except ValueError:
                log("invalid")
                if MODE == "fragile":
                    sys.exit("gallery: cannot parse a line, giving up")
                if MODE == "anonymous":
                    fail("", "E_PROTOCOL_INVALID_JSON", "not JSON")
                    continue
                print("gallery: ignored a line that is not JSON", file=sys.stderr)
                continue
            if not isinstance(request, dict):
                continue
            log(("" if request.get("request_id") else "noid ") + str(request.get("op")))
            if not request.get("request_id"):
                if MODE == "robustness-noid":
                    request["request_id"]  # KeyError: the plugin dies
                if MODE == "anonymous":
                    request["request_id"] = ""
                    handle(request)
                continue
            handle(request)
    for sid in follows:
        send({"type": "event", "stream_id": sid, "event": "end", "ok": True})
    if helper is not None:
        helper.terminate()
        helper.wait()
    if MODE == "shutdown-ignore-eof":
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
