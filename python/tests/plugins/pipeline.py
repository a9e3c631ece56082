#!/usr/bin/env python3
"""Every kind of handler devctl_plugin offers, for the conformance suite:
the pipeline ops, a finite stream, a follow stream and a command. It only
reads the repo, so dry runs are trivially honest."""
import os
import sys

from devctl_plugin import OpError, Plugin

plugin = Plugin("pipeline", watch=["config/*.yaml"])


@plugin.op("config.mutate")
def mutate(ctx, input):
    return {"config_patch": {"set": {"services.web.port": 8099}, "unset": []}}


@plugin.op("validate.run")
def validate(ctx, input):
    errors = []
    if not os.path.isdir(ctx.root()):
        errors.append({"code": "E_NO_REPO", "message": "repo root %s is missing" % ctx.root()})
    return {"valid": not errors, "errors": errors, "warnings": []}


@plugin.op("build.run")
def build(ctx, input):
    steps = input.get("steps") or ["web"]
    if not isinstance(steps, list):
        raise OpError("E_RUNTIME", "steps must be a list of names")
    return {"steps": [{"name": str(step), "ok": True, "duration_ms": 0} for step in steps], "artifacts": {}}


@plugin.op("launch.plan")
def launch_plan(ctx, input):
    return {"services": [{"name": "web", "cwd": ctx.root(),
                          "command": [sys.executable, "-m", "http.server", "8099"],
                          "health": {"type": "http", "url": "http://127.0.0.1:8099/", "timeout_ms": 5000}}]}


@plugin.stream("ticks")
def ticks(ctx, input, events):
    for n in range(3):
        events.send("tick", fields={"n": n})


@plugin.stream("logs.follow")
def follow(ctx, input, events):
    while not ctx.wait(0.05):
        events.log("still here")


@plugin.command("doctor", help="Check the environment")
def doctor(ctx, argv):
    print("all good")
    return 0


if __name__ == "__main__":
    plugin.run()
