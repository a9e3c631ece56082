"""What a handler gets besides its input: the request's `ctx` (repo_root,
cwd, dry_run, deadline), a way to add warnings and notes to its response,
and, for streams, the `Events` it sends.

A handler keeps its thread until it returns (`threads`). When the host
stops waiting for it (the deadline passed, or stdin closed and the plugin is
shutting down), its `ctx.cancelled` event is set; long loops should check
it (or call `ctx.wait(seconds)`, which returns early) so the thread ends.
"""

import os
import threading
import time

from .errors import Cancelled


class Ctx:
    """One request's context. Read-only for handlers, except `warn`/`note`."""

    def __init__(self, request_id, op, ctx, received=None):
        ctx = ctx if isinstance(ctx, dict) else {}
        self.request_id = request_id
        self.op = op
        self.repo_root = _text(ctx.get("repo_root"))
        self.cwd = _text(ctx.get("cwd"))
        self.dry_run = ctx.get("dry_run") is True
        received = time.monotonic() if received is None else received
        budget = _deadline_ms(ctx.get("deadline_ms"))
        self.deadline_ms = budget
        # `time.monotonic()` value when the host stops waiting, or None.
        self.deadline = None if budget is None else received + budget / 1000.0
        self.cancelled = threading.Event()
        self._answered = False
        self._lock = threading.Lock()
        self._warnings = []
        self._notes = []

    def root(self):
        """The directory to work on: `ctx.repo_root`, else the process cwd."""
        return self.repo_root or os.getcwd()

    def remaining(self):
        """Seconds left before the deadline (None without one; never < 0)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def wait(self, seconds):
        """Sleeps up to `seconds`; returns True early when cancelled."""
        return self.cancelled.wait(seconds)

    def check(self):
        """Raises `Cancelled` once the host stopped waiting for this request."""
        if self.cancelled.is_set():
            raise Cancelled("request %s was cancelled" % self.request_id)

    def warn(self, message):
        """Adds a warning to the response (hosts show it to the user)."""
        with self._lock:
            self._warnings.append({"level": "warn", "message": str(message)})

    def note(self, message):
        """Adds an informational note to the response."""
        with self._lock:
            self._notes.append({"level": "info", "message": str(message)})

    def _take_messages(self):
        with self._lock:
            warnings, notes = self._warnings, self._notes
            self._warnings, self._notes = [], []
        return warnings, notes


class Events:
    """Where a stream handler sends its events. `end` is sent for you when
    the handler returns (ok) or raises (not ok, with the message)."""

    def __init__(self, stream_id, ctx, write_frame):
        self.stream_id = stream_id
        self._ctx = ctx
        self._write = write_frame
        self._lock = threading.Lock()
        self._ended = False

    def send(self, event, message=None, level=None, fields=None):
        """Sends one event. Raises `Cancelled` once the stream has ended
        (the plugin is shutting down), so a follow loop stops by itself."""
        if not isinstance(event, str) or not event or event == "end":
            raise ValueError("event name must be a non-empty string other than 'end'")
        frame = {"type": "event", "stream_id": self.stream_id, "event": event}
        if level is not None:
            frame["level"] = str(level)
        if message is not None:
            frame["message"] = str(message)
        if fields is not None:
            frame["fields"] = dict(fields)
        with self._lock:
            if self._ended:
                raise Cancelled("stream %s has ended" % self.stream_id)
            self._write(frame)

    def log(self, message, level="info"):
        """Sends a `log` event."""
        self.send("log", message=message, level=level)

    def _end(self, ok, message=None):
        """Sends `end` once; returns False when it was already sent."""
        frame = {"type": "event", "stream_id": self.stream_id, "event": "end", "ok": bool(ok)}
        if message:
            frame["message"] = str(message)
        with self._lock:
            if self._ended:
                return False
            self._ended = True
            self._write(frame)
            return True


def _text(value):
    return value if isinstance(value, str) and value else None


def _deadline_ms(value):
    # Hostile numbers (strings, NaN, 1e30, negatives, booleans) mean "no
    # usable deadline" rather than a crash or an instant timeout.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value <= 0 or value > 10 ** 12:
        return None
    return float(value)
