#!/usr/bin/env python3
"""A devctl plugin: one service and one command (pip install ./python)."""
import sys

from devctl_plugin import Plugin

plugin = Plugin("hello")


@plugin.op("launch.plan")
def launch_plan(ctx, input):
    port = (input.get("config") or {}).get("hello", {}).get("port", 8099)
    return {"services": [{
        "name": "hello", "cwd": ctx.root(),
        "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        "health": {"type": "tcp", "address": "127.0.0.1:%d" % port, "timeout_ms": 10000},
    }]}


@plugin.command("greet", help="Say hello", args=[("name", "string")])
def greet(ctx, argv):
    print("hello, %s" % (" ".join(argv) or "world"))  # goes to stderr, never into frames
    return 0


if __name__ == "__main__":
    plugin.run()
