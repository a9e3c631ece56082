"""A plugin as a set of decorated functions; the handshake is generated from
them, so what the plugin declares cannot drift from what it answers.

    plugin = Plugin("hello")

    @plugin.op("launch.plan")
    def plan(ctx, input):
        return {"services": [...]}

    @plugin.stream("logs.follow")
    def follow(ctx, input, events):
        events.log("started")

    @plugin.command("greet", help="Say hello", args=[("name", "string")])
    def greet(ctx, argv):
        return 0

    if __name__ == "__main__":
        plugin.run()
"""

import os
import sys

PROTOCOL_VERSION = "v2"
COMMAND_RUN = "command.run"


class Command:
    """A plugin-defined CLI command (`devctl <name> ARGS…`)."""

    def __init__(self, name, handler, help=None, args=()):
        self.name = name
        self.handler = handler
        self.help = help
        self.args = args

    def spec(self):
        spec = {"name": self.name}
        if self.help:
            spec["help"] = self.help
        if self.args:
            spec["args_spec"] = [{"name": name, "type": kind} for name, kind in self.args]
        return spec


class Plugin:
    """The handlers of one plugin. Registering a name twice is an error."""

    def __init__(self, name, watch=()):
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a plugin needs a non-empty name")
        self.name = name
        self.ops = {}
        self.streams = {}
        self.commands = {}
        self.watch_globs = [_nonempty(glob, "watch glob") for glob in watch]

    def op(self, name):
        """Decorator: `handler(ctx, input) -> output` answers requests for
        `name`. `input` is the request's input object ({} when absent)."""
        return self._registrar(name, self.ops)

    def stream(self, name):
        """Decorator: `handler(ctx, input, events)` serves a stream op. The
        request is answered `{stream_id}` at once; the handler then sends
        events, and `end` follows when it returns."""
        return self._registrar(name, self.streams)

    def command(self, name, help=None, args=()):
        """Decorator: `handler(ctx, argv) -> exit code` runs `devctl <name>`
        through `command.run`. `args` is a list of (name, type) pairs;
        `ctx.input` holds the whole input (`name`, `argv`, `config`)."""
        _nonempty(name, "command name")
        pairs = []
        for arg in args:
            if isinstance(arg, dict):
                arg = (arg.get("name"), arg.get("type"))
            if not (isinstance(arg, (tuple, list)) and len(arg) == 2):
                raise ValueError("command %r: each arg is a (name, type) pair, got %r" % (name, arg))
            pairs.append((_nonempty(arg[0], "arg name"), _nonempty(arg[1], "arg type")))

        def register(handler):
            if name in self.commands:
                raise ValueError("command %r is registered twice" % name)
            if COMMAND_RUN in self.ops or COMMAND_RUN in self.streams:
                raise ValueError("command.run is registered as an op; use either it or @plugin.command")
            self.commands[name] = Command(name, handler, help, tuple(pairs))
            return handler

        return register

    def watch(self, *globs):
        """Globs (relative to the repo root) whose changes re-run the
        pipeline in a host's watch mode (`declares.watch`)."""
        self.watch_globs.extend(_nonempty(glob, "watch glob") for glob in globs)
        return self

    def handshake(self):
        """The handshake frame: exactly what is registered."""
        ops = set(self.ops) | set(self.streams)
        if self.commands:
            ops.add(COMMAND_RUN)
        capabilities = {"ops": sorted(ops)}
        if self.streams:
            capabilities["streams"] = sorted(self.streams)
        if self.commands:
            capabilities["commands"] = [command.spec() for command in self.commands.values()]
        frame = {
            "type": "handshake",
            "protocol_version": PROTOCOL_VERSION,
            "plugin_name": self.name,
            "capabilities": capabilities,
        }
        if self.watch_globs:
            frame["declares"] = {"watch": list(self.watch_globs)}
        return frame

    def serve(self, input, output, **options):
        """Serves requests from the binary file `input`, writing frames to
        the binary file `output`, until `input` ends. See `serve.Server`."""
        from .serve import Server

        Server(self, output, **options).serve(input)

    def run(self):
        """Serves the real stdin/stdout and exits when stdin closes.

        fd 1 is pointed at stderr and fd 0 at /dev/null first, so `print`
        and child processes cannot corrupt frames or swallow requests."""
        from .stdio import take_protocol_stdio

        input, output = take_protocol_stdio()
        code = 0
        try:
            self.serve(input, output)
        except KeyboardInterrupt:
            code = 130
        # Every request is answered and every stream ended by now. Threads a
        # handler left running (even non-daemon ones) must not keep the
        # process alive after stdin closed: hosts wait for the exit.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)

    def _registrar(self, name, table):
        if callable(name):
            raise ValueError("give the op's name: @plugin.op(\"launch.plan\"), not @plugin.op")
        _nonempty(name, "op name")

        def register(handler):
            self._claim(name)
            table[name] = handler
            return handler

        return register

    def _claim(self, name):
        if name in self.ops or name in self.streams:
            raise ValueError("op %r is registered twice" % name)
        if name == COMMAND_RUN and self.commands:
            raise ValueError("command.run is served by @plugin.command; do not register it as an op")


def _nonempty(value, what):
    if not isinstance(value, str) or not value.strip():
        raise ValueError("%s must be a non-empty string, got %r" % (what, value))
    return value
