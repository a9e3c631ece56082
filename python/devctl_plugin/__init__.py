"""Write devctl protocol-v2 plugins in Python (standard library only).

A plugin is a few decorated functions; `plugin.run()` writes the handshake
from them and serves stdin/stdout until stdin closes:

    from devctl_plugin import Plugin

    plugin = Plugin("hello")

    @plugin.op("launch.plan")
    def plan(ctx, input):
        return {"services": [{"name": "web", "cwd": ".", "command": ["python3", "-m", "http.server"]}]}

    if __name__ == "__main__":
        plugin.run()

What you get without writing it: stdout carries frames only (fd 1 points at
stderr, so `print` and child processes cannot corrupt the protocol), a
handler that blocks never stalls the other requests (after 5 ms another
thread takes over reading), `ctx.deadline_ms` becomes `E_TIMEOUT`, an op
you did not register is answered `E_UNSUPPORTED`, an exception becomes
`E_RUNTIME` with its message, and at stdin EOF work in flight is finished or
answered `E_CANCELED`, streams are ended, and the process exits 0.
`devctl_plugin.testing.Harness` drives a plugin in memory from a test.
The protocol: docs/protocol.md in the devctl toolkit.
"""

from .ctx import Ctx, Events
from .errors import E_CANCELED, E_RUNTIME, E_TIMEOUT, E_UNSUPPORTED, Cancelled, OpError
from .plugin import PROTOCOL_VERSION, Plugin

__all__ = [
    "Plugin",
    "Ctx",
    "Events",
    "OpError",
    "Cancelled",
    "PROTOCOL_VERSION",
    "E_UNSUPPORTED",
    "E_RUNTIME",
    "E_TIMEOUT",
    "E_CANCELED",
]
__version__ = "0.1.0"
