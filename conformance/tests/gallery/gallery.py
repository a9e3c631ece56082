#!/usr/bin/env python3
"""Conformance self-test gallery: a well-behaved plugin and, per family, a
variant that breaks exactly that family. Standard library only.

usage: gallery.py MODE

good                 passes every check
handshake-version    says protocol_version "v1"                  -> handshake.version
stdout-chatty        prints a line to stdout before each answer  -> stdout.frames-only
unknown-op-runtime   answers unknown ops with E_RUNTIME           -> unknown-op.unsupported
timeout-hang         never answers the op "slow"                 -> timeout.slow
response-twice       answers every request twice                 -> response.exactly-one
schema-bad           launch.plan answers {"services": "none"}    -> schema.launch.plan
dry-run-writes       build.run writes a file despite dry_run     -> dry-run.repo-unchanged
determinism-counter  ping answers a counter                      -> determinism.ping
repo-root-cwd        launch.plan names the process cwd           -> repo-root.follows-ctx
robustness-fragile   exits on a line that is not JSON            -> robustness.*
concurrency-drop     answers only the last request of each read  -> concurrency.pipelined
                     (the suite sends its pipelined requests in one write)
streams-after-end    sends an event after end                    -> streams.nothing-after-end
shutdown-ignore-eof  keeps running after stdin closes            -> shutdown.exits-on-eof
shutdown-orphan      leaves a child process running on exit      -> shutdown.no-leftovers
hang-all             handshakes, then never answers anything     -> (many; the run must still end)
"""
import json
import os
import subprocess
import sys
import time

MODE = sys.argv[1]
OPS = ["ping", "config.mutate", "build.run", "launch.plan", "ticks", "command.run"]
if MODE == "timeout-hang":
    OPS.append("slow")
counter = 0


def send(frame):
    text = json.dumps(frame) + "\n"
    if MODE == "response-twice" and frame["type"] == "response":
        text += text
    if MODE == "stdout-chatty" and frame["type"] == "response":
        text = "handling a request...\n" + text
    os.write(1, text.encode())


def ok(rid, output):
    send({"type": "response", "request_id": rid, "ok": True, "output": output})


def fail(rid, code, message):
    send({"type": "response", "request_id": rid, "ok": False, "error": {"code": code, "message": message}})


def handle(request):
    global counter
    rid, op, ctx = request["request_id"], request.get("op"), request.get("ctx") or {}
    data = request.get("input")
    repo = ctx.get("repo_root") or os.getcwd()
    if op not in OPS:
        if MODE == "unknown-op-runtime":
            return fail(rid, "E_RUNTIME", "no such op")
        return fail(rid, "E_UNSUPPORTED", "op %r is not supported" % op)
    if op == "slow":
        return  # never answered
    if not isinstance(data, dict):
        return fail(rid, "E_RUNTIME", "input must be an object")
    if op == "ping":
        if MODE == "determinism-counter":
            counter += 1
            return ok(rid, {"count": counter})
        return ok(rid, {"pong": True})
    if op == "config.mutate":
        return ok(rid, {"config_patch": {"set": {"gallery.mode": MODE}}})
    if op == "build.run":
        if MODE == "dry-run-writes" or not ctx.get("dry_run"):
            with open(os.path.join(repo, "built.txt"), "w") as out:
                out.write("built\n")
        return ok(rid, {"steps": [{"name": "all", "ok": True, "duration_ms": 1}]})
    if op == "launch.plan":
        if MODE == "schema-bad":
            return ok(rid, {"services": "none"})
        where = os.getcwd() if MODE == "repo-root-cwd" else repo
        return ok(rid, {"services": [{"name": "app", "cwd": where, "command": ["true"]}]})
    if op == "ticks":
        sid = "ticks-" + rid
        ok(rid, {"stream_id": sid})
        for n in range(3):
            send({"type": "event", "stream_id": sid, "event": "tick", "fields": {"n": n}})
        send({"type": "event", "stream_id": sid, "event": "end", "ok": True})
        if MODE == "streams-after-end":
            send({"type": "event", "stream_id": sid, "event": "tick", "fields": {"n": 99}})
        return
    if op == "command.run":
        return ok(rid, {"exit_code": 0})


def lines():
    """Request lines as they arrive, grouped by read (for concurrency-drop)."""
    pending = b""
    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if MODE == "concurrency-drop" and complete:
            complete = complete[-1:]
        yield complete


def main():
    version = "v1" if MODE == "handshake-version" else "v2"
    send({"type": "handshake", "protocol_version": version, "plugin_name": "gallery-" + MODE,
          "capabilities": {"ops": OPS, "streams": ["ticks"],
                           "commands": [{"name": "hello", "help": "says hello"}]}})
    if MODE == "shutdown-orphan":
        # A child in another session: it survives the plugin's exit.
        subprocess.Popen(["sleep", "300"], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for batch in lines():
        if MODE == "hang-all":
            continue
        for raw in batch:
            if not raw.strip():
                continue
            try:
                request = json.loads(raw)
            except ValueError:
                if MODE == "robustness-fragile":
                    sys.exit("gallery: cannot parse a line, giving up")
                print("gallery: ignored a line that is not JSON", file=sys.stderr)
                continue
            if not isinstance(request, dict) or not request.get("request_id"):
                continue
            handle(request)
    if MODE == "shutdown-ignore-eof":
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
