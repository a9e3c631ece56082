"""Drive a plugin in memory from `unittest` or pytest.

    from devctl_plugin.testing import Harness

    with Harness(plugin) as harness:
        response = harness.request("launch.plan", {"config": {}}, dry_run=True)
        assert response.ok, response.error
        stream = harness.request("logs.follow", {})
        events = harness.events(stream.output["stream_id"])   # up to `end`

The plugin is served over real pipes in a thread of the test process, the
same loop `plugin.run()` uses. Every line it writes must be a frame; a line
that is not fails the next call with `ProtocolViolation`. Leaving the `with`
block closes the plugin's stdin and waits for it to return.
"""

import json
import os
import threading
import time

from .serve import Server


class ProtocolViolation(AssertionError):
    """The plugin wrote something hosts would reject."""


class Response:
    """A response frame: `ok`, `output`, `error` (dict or None), `warnings`,
    `notes`, and the raw `frame`."""

    def __init__(self, frame):
        self.frame = frame
        self.request_id = frame.get("request_id")
        self.ok = frame.get("ok") is True
        self.output = frame.get("output")
        self.error = frame.get("error")
        self.warnings = frame.get("warnings", [])
        self.notes = frame.get("notes", [])

    @property
    def code(self):
        """The error code, or None for a success."""
        return (self.error or {}).get("code")

    def __repr__(self):
        return "Response(%s)" % json.dumps(self.frame, sort_keys=True)


class Harness:
    def __init__(self, plugin, timeout=5.0, **server_options):
        self.timeout = timeout
        self._ids = 0
        self._cv = threading.Condition()
        self._responses = {}
        self._events = {}
        self._unsolicited = []
        self._sent = set()
        self._violation = None
        self._eof = False
        self.handshake = None
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        self._requests = os.fdopen(request_w, "wb")
        self._replies = os.fdopen(reply_r, "rb")
        plugin_in, plugin_out = os.fdopen(request_r, "rb"), os.fdopen(reply_w, "wb")
        self.server = Server(plugin, plugin_out, **server_options)

        def serve():
            try:
                self.server.serve(plugin_in)
            finally:
                plugin_in.close()
                plugin_out.close()

        self._serving = threading.Thread(target=serve, daemon=True, name="devctl-harness-plugin")
        self._serving.start()
        self._reading = threading.Thread(target=self._read, daemon=True, name="devctl-harness-reader")
        self._reading.start()
        self._wait(lambda: self.handshake, "the handshake")

    # -- calls ------------------------------------------------------------

    def request(self, op, input=None, dry_run=False, repo_root=None, cwd=None, deadline_ms=None,
                request_id=None):
        """Sends one request and waits for its response (`Response`)."""
        request_id = self.send(op, input, dry_run, repo_root, cwd, deadline_ms, request_id)
        return self.response(request_id)

    def send(self, op, input=None, dry_run=False, repo_root=None, cwd=None, deadline_ms=None,
             request_id=None):
        """Sends one request without waiting; returns its request_id."""
        if request_id is None:
            self._ids += 1
            request_id = "test-%d" % self._ids
        ctx = {}
        if repo_root is not None:
            ctx["repo_root"] = str(repo_root)
        if cwd is not None:
            ctx["cwd"] = str(cwd)
        if deadline_ms is not None:
            ctx["deadline_ms"] = deadline_ms
        if dry_run:
            ctx["dry_run"] = True
        frame = {"type": "request", "request_id": request_id, "op": op, "ctx": ctx}
        if input is not None:
            frame["input"] = input
        self.send_line(json.dumps(frame))
        return request_id

    def send_line(self, line):
        """Writes one raw line to the plugin's stdin (for malformed input)."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        try:
            request_id = json.loads(line).get("request_id")
        except (ValueError, AttributeError):
            request_id = None
        if isinstance(request_id, str):
            with self._cv:
                self._sent.add(request_id)
        self._requests.write(line.rstrip(b"\n") + b"\n")
        self._requests.flush()

    def response(self, request_id):
        """Waits for the response to `request_id`."""
        frame = self._wait(lambda: self._responses.get(request_id), "a response to %s" % request_id)
        return Response(frame)

    def events(self, stream_id):
        """Waits for the stream's `end`; returns all its events, `end` last."""
        self._wait(lambda: any(e.get("event") == "end" for e in self._events.get(stream_id, [])),
                   "the end of stream %s" % stream_id)
        with self._cv:
            return list(self._events[stream_id])

    def run_command(self, name, argv=(), config=None, **ctx):
        """Runs a plugin command through `command.run`; returns the Response."""
        return self.request("command.run", {"name": name, "argv": list(argv), "config": config or {}}, **ctx)

    @property
    def unsolicited(self):
        """Responses to ids that were never sent, in arrival order."""
        with self._cv:
            return list(self._unsolicited)

    def finish(self):
        """Closes the plugin's stdin and waits until it stopped serving."""
        if not self._requests.closed:
            self._requests.close()
        self._serving.join(self.timeout)
        if self._serving.is_alive():
            raise AssertionError("the plugin did not stop within %.1f s of stdin closing" % self.timeout)
        self._reading.join(self.timeout)
        self._replies.close()
        self._raise_violation()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()
        return False

    # -- reading ----------------------------------------------------------

    def _read(self):
        first = True
        for raw in self._replies:
            try:
                # Strict UTF-8, as hosts read it.
                frame = json.loads(raw.decode("utf-8"))
            except ValueError:
                frame = None
            with self._cv:
                problem = _problem(frame, first)
                if problem:
                    self._violation = self._violation or "%s: %r" % (problem, raw[:200])
                elif first:
                    self.handshake = frame
                elif frame["type"] == "response":
                    rid = frame.get("request_id")
                    if rid in self._responses:
                        self._violation = self._violation or "two responses to %s" % rid
                    self._responses[rid] = frame
                    if rid not in self._sent:
                        self._unsolicited.append(frame)
                else:
                    self._events.setdefault(frame.get("stream_id"), []).append(frame)
                first = False
                self._cv.notify_all()
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def _wait(self, found, what):
        deadline = time.monotonic() + self.timeout
        with self._cv:
            while True:
                self._raise_violation()
                value = found()
                if value:
                    return value
                if self._eof:
                    raise AssertionError("the plugin stopped writing before %s" % what)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s within %.1f s" % (what, self.timeout))
                self._cv.wait(left)

    def _raise_violation(self):
        if self._violation:
            raise ProtocolViolation(self._violation)


def _problem(frame, first):
    if not isinstance(frame, dict):
        return "a stdout line that is not a JSON object"
    kind = frame.get("type")
    if first:
        return None if kind == "handshake" else "the first line is not a handshake"
    if kind not in ("response", "event"):
        return "a %r frame after the handshake" % (kind,)
    return None
