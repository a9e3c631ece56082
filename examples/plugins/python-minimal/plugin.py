#!/usr/bin/env python3
"""A minimal protocol-v2 plugin in Python (standard library only).

The same ops as the Rust example (sdk/examples/minimal_plugin.rs): ping,
config.mutate, launch.plan, the stream `ticks` and the command `hello`.
Copy it as the starting point of a plugin in any language:

- stdout carries frames only, one JSON object per line; logs go to stderr;
- the first line is the handshake, listing every op you answer;
- answer every request exactly once, echoing its request_id;
- answer ops you do not know with E_UNSUPPORTED;
- exit when stdin closes.
"""
import json
import sys

OPS = ["ping", "config.mutate", "launch.plan", "ticks", "command.run"]


def send(frame):
    sys.stdout.write(json.dumps(frame, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def ok(request_id, output):
    send({"type": "response", "request_id": request_id, "ok": True, "output": output})


def fail(request_id, code, message):
    send({"type": "response", "request_id": request_id, "ok": False,
          "error": {"code": code, "message": message}})


def handle(request):
    rid, op, data = request["request_id"], request.get("op"), request.get("input") or {}
    if op == "ping":
        ok(rid, request.get("input"))
    elif op == "config.mutate":
        ok(rid, {"config_patch": {"set": {"services.hello.port": 8099}}})
    elif op == "launch.plan":
        ok(rid, {"services": [{
            "name": "hello", "cwd": ".",
            "command": ["python3", "-m", "http.server", "8099", "--bind", "127.0.0.1"],
            "health": {"type": "tcp", "address": "127.0.0.1:8099", "timeout_ms": 10000},
        }]})
    elif op == "ticks":
        stream_id = "ticks-" + rid
        ok(rid, {"stream_id": stream_id})
        for n in range(int(data.get("count", 3))):
            send({"type": "event", "stream_id": stream_id, "event": "tick", "fields": {"n": n}})
        send({"type": "event", "stream_id": stream_id, "event": "end", "ok": True})
    elif op == "command.run" and data.get("name") == "hello":
        print("hello " + " ".join(data.get("argv", [])), file=sys.stderr)
        ok(rid, {"exit_code": 0})
    else:
        fail(rid, "E_UNSUPPORTED", "op %r is not supported" % op)


def main():
    send({"type": "handshake", "protocol_version": "v2", "plugin_name": "python-minimal",
          "capabilities": {"ops": OPS, "streams": ["ticks"],
                           "commands": [{"name": "hello", "help": "Say hello"}]}})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError:
            print("ignored a line that is not JSON", file=sys.stderr)
            continue
        if not isinstance(request, dict) or not request.get("request_id"):
            print("ignored a frame without request_id", file=sys.stderr)
            continue
        try:
            handle(request)
        except Exception as err:  # a bug in a handler must not kill the plugin
            fail(request["request_id"], "E_RUNTIME", str(err))


if __name__ == "__main__":
    main()
