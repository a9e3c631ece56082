"""The protocol loop: write the handshake, read requests, run each handler
(on the reading thread; see `threads.ReaderRole` for how a slow one hands
reading on), and write every frame through one locked writer.

Each request is answered exactly once: by its handler, by the deadline
watcher (`E_TIMEOUT` when `ctx.deadline_ms` passes first), or at shutdown
(`E_CANCELED`); whichever comes first wins and later answers are dropped.
Bad input lines never stop the loop: a line naming a request id is answered,
anything else is logged to stderr and skipped. At end of input, work in
flight gets a short grace to finish, then is cancelled and open streams are
ended, and `serve` returns.
"""

import inspect
import itertools
import json
import re
import sys
import threading
import time
import traceback

from .ctx import Ctx, Events
from .errors import (
    E_CANCELED,
    E_PROTOCOL_UNEXPECTED_FRAME,
    E_RUNTIME,
    E_TIMEOUT,
    E_UNSUPPORTED,
    Cancelled,
    OpError,
)
from .plugin import COMMAND_RUN
from .threads import DeadlineWatcher, ReaderRole, Workers

# The protocol's bound on one frame (contract::limits::MAX_FRAME_BYTES).
MAX_LINE = 64 * 1024 * 1024
# After stdin closes: how long work in flight may still finish normally.
FINISH_GRACE = 0.2
_SURROGATE = re.compile("[\ud800-\udfff]")


class Server:
    def __init__(self, plugin, output, max_line=MAX_LINE, finish_grace=FINISH_GRACE, log=None):
        self.plugin = plugin
        self.max_line = max_line
        self.finish_grace = finish_grace
        self._output = output
        self._log_file = log if log is not None else sys.stderr
        self._write_lock = threading.Lock()
        self._closed = False
        # Requests not yet answered and streams not yet ended, for shutdown.
        self._state = threading.Condition()
        self._pending = {}
        self._streams = []
        self._stream_ids = itertools.count(1)
        self._deadlines = DeadlineWatcher(self._expire)
        self._workers = Workers()
        self._stopping = False

    # -- the loop ---------------------------------------------------------

    def serve(self, input):
        self.write_frame(self.plugin.handshake())
        ReaderRole(_lines(input, self.max_line, self.log), self._dispatch, self.log).run()
        self._shutdown()

    def _dispatch(self, line):
        if not line.strip():
            return
        received = time.monotonic()
        request = self._parse(line)
        if request is None:
            return
        request_id, op, raw_ctx, data = request
        ctx = Ctx(request_id, op, raw_ctx, received)
        if op in self.plugin.ops:
            self._run_inline(ctx, self._run_op, self.plugin.ops[op], data)
        elif op in self.plugin.streams:
            self._start_stream(ctx, self.plugin.streams[op], data)
        elif op == COMMAND_RUN and self.plugin.commands:
            self._run_inline(ctx, self._run_command, None, data)
        else:
            error = OpError(E_UNSUPPORTED, "op %r is not supported by plugin %s" % (op, self.plugin.name))
            self._respond(ctx, error=error, track=False)

    def _parse(self, line):
        """(request_id, op, ctx, input) of a request line, or None when the
        line was answered or skipped."""
        try:
            frame = json.loads(line)
        except ValueError as err:
            self.log("ignored a line that is not JSON: %s" % err)
            return None
        if not isinstance(frame, dict):
            self.log("ignored a JSON line that is not an object")
            return None
        request_id = frame.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            self.log("ignored a frame without request_id")
            return None
        kind = frame.get("type")
        if kind in ("handshake", "response", "event"):
            self.log("ignored a %s frame (hosts send only requests)" % kind)
            return None
        op, ctx, data = frame.get("op"), frame.get("ctx"), frame.get("input")
        problem = None
        if kind != "request":
            problem = "type must be \"request\", got %r" % (kind,)
        elif not isinstance(op, str) or not op:
            problem = "op must be a non-empty string"
        elif ctx is not None and not isinstance(ctx, dict):
            problem = "ctx must be an object"
        if problem:
            bare = Ctx(request_id, op if isinstance(op, str) else "", None)
            self._respond(bare, error=OpError(E_PROTOCOL_UNEXPECTED_FRAME, "malformed request: " + problem), track=False)
            return None
        return request_id, op, ctx, data

    # -- running handlers -------------------------------------------------

    def _run_inline(self, ctx, runner, handler, data):
        """Runs the handler on the reading thread (`threads.ReaderRole`
        hands reading to another thread if it takes long)."""
        with self._state:
            self._pending[ctx] = True
        if ctx.deadline is not None:
            self._deadlines.add(ctx)
        runner(ctx, handler, data)

    def _run_op(self, ctx, handler, data):
        try:
            data = _object_input(ctx.op, data)
            output = _awaited(handler(ctx, data))
        except BaseException as err:  # noqa: B902 - every failure is an answer
            self._respond(ctx, error=self._error_of(ctx, err))
        else:
            self._respond(ctx, output=output)

    def _run_command(self, ctx, _handler, data):
        try:
            data = _object_input(COMMAND_RUN, data)
            name, argv = data.get("name"), data.get("argv", [])
            command = self.plugin.commands.get(name) if isinstance(name, str) else None
            if command is None:
                raise OpError(E_UNSUPPORTED, "plugin %s has no command %r" % (self.plugin.name, name))
            if argv is None:
                argv = []
            if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
                raise OpError(E_RUNTIME, "invalid input for command.run: argv must be a list of strings",
                              {"kind": "invalid_input"})
            ctx.input = data
            exit_code = _awaited(command.handler(ctx, list(argv)))
            if exit_code is None:
                exit_code = 0
            if isinstance(exit_code, bool) or not isinstance(exit_code, int):
                raise TypeError("command %r returned %r; return an int exit code" % (name, exit_code))
        except BaseException as err:  # noqa: B902
            self._respond(ctx, error=self._error_of(ctx, err))
        else:
            self._respond(ctx, output={"exit_code": exit_code})

    def _start_stream(self, ctx, handler, data):
        stream_id = "%s-%d" % (ctx.op, next(self._stream_ids))
        events = Events(stream_id, ctx, self.write_frame)
        try:
            data = _object_input(ctx.op, data)
        except OpError as err:
            self._respond(ctx, error=err, track=False)
            return
        with self._state:
            self._streams.append((ctx, events))
        # The answer goes out before any event: same writer, same thread.
        self._respond(ctx, output={"stream_id": stream_id}, track=False)

        def run():
            try:
                _awaited(handler(ctx, data, events))
            except Cancelled:
                pass
            except BaseException as err:  # noqa: B902
                events._end(False, self._error_of(ctx, err).message)
            else:
                events._end(True)
            with self._state:
                self._streams = [(c, e) for c, e in self._streams if e is not events]
                if self._stopping:
                    self._state.notify_all()

        try:
            self._workers.submit(run)
        except RuntimeError as err:
            events._end(False, "cannot start a thread for the stream: %s" % err)
            with self._state:
                self._streams = [(c, e) for c, e in self._streams if e is not events]

    def _error_of(self, ctx, err):
        if isinstance(err, OpError):
            return err
        if isinstance(err, Cancelled):
            return OpError(E_CANCELED, str(err))
        self.log("%s (request %s) failed:\n%s" % (ctx.op, ctx.request_id, traceback.format_exc().rstrip()))
        message = str(err) or type(err).__name__
        return OpError(E_RUNTIME, "%s: %s" % (ctx.op, message), {"exception": type(err).__name__})

    # -- answering --------------------------------------------------------

    def _respond(self, ctx, output=None, error=None, track=True):
        """Sends the one response of `ctx`; False when it was answered already."""
        if track:
            with self._state:
                if self._pending.pop(ctx, None) is None:
                    return False
                if self._stopping:
                    self._state.notify_all()
        ctx._answered = True
        warnings, notes = ctx._take_messages()
        frame = {"type": "response", "request_id": ctx.request_id, "ok": error is None}
        if error is None:
            frame["output"] = output
        else:
            frame["error"] = error.body()
        if warnings:
            frame["warnings"] = warnings
        if notes:
            frame["notes"] = notes
        try:
            self.write_frame(frame)
        except (TypeError, ValueError) as err:
            # The output is not JSON (a set, NaN, an object): still one answer.
            self.log("%s (request %s): cannot encode the answer: %s" % (ctx.op, ctx.request_id, err))
            failure = OpError(E_RUNTIME, "%s: output is not JSON-encodable: %s" % (ctx.op, err))
            self.write_frame({"type": "response", "request_id": ctx.request_id, "ok": False,
                              "error": failure.body()})
        return True

    def _expire(self, ctx):
        error = OpError(E_TIMEOUT, "%s did not finish within its deadline (%d ms)" % (ctx.op, ctx.deadline_ms))
        if self._respond(ctx, error=error):
            ctx.cancelled.set()

    def write_frame(self, frame):
        """Writes one frame as one line. Encoding errors raise before
        anything is written; after shutdown frames are dropped."""
        text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        try:
            line = text.encode("utf-8") + b"\n"
        except UnicodeEncodeError:
            # Lone surrogates (a file name decoded with surrogateescape) are
            # not Unicode: strict hosts reject the whole line. Replace them.
            line = _SURROGATE.sub("\ufffd", text).encode("utf-8") + b"\n"
        with self._write_lock:
            if self._closed:
                return
            try:
                self._output.write(line)
                self._output.flush()
            except (BrokenPipeError, ValueError, OSError):
                # The host is gone: there is no one left to answer.
                self._closed = True

    def log(self, message):
        try:
            self._log_file.write("%s: %s\n" % (self.plugin.name, message))
            self._log_file.flush()
        except (OSError, ValueError):
            pass

    # -- shutdown ---------------------------------------------------------

    def _shutdown(self):
        deadline = time.monotonic() + self.finish_grace
        with self._state:
            self._stopping = True
            while (self._pending or self._streams) and time.monotonic() < deadline:
                self._state.wait(max(0.0, deadline - time.monotonic()))
            pending = list(self._pending)
            streams = list(self._streams)
        for ctx in pending + [ctx for ctx, _ in streams]:
            ctx.cancelled.set()
        for ctx in pending:
            self._respond(ctx, error=OpError(E_CANCELED, "plugin is shutting down (stdin closed)"))
        for _, events in streams:
            events._end(False, "plugin is shutting down (stdin closed)")
        self._deadlines.stop()
        with self._write_lock:
            self._closed = True
            try:
                self._output.flush()
            except (OSError, ValueError):
                pass


def _awaited(result):
    """An `async def` handler's result: its coroutine, run to completion on
    this thread's own event loop."""
    if inspect.iscoroutine(result):
        import asyncio

        return asyncio.run(result)
    return result


def _object_input(op, data):
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OpError(E_RUNTIME, "invalid input for %s: expected an object, got %s" % (op, type(data).__name__),
                      {"kind": "invalid_input"})
    return data


def _lines(input, max_line, log):
    """Lines of `input` (bytes, newline stripped). A line longer than
    `max_line` is skipped whole, never buffered whole."""
    while True:
        line = input.readline(max_line + 1)
        if not line:
            return
        if len(line) > max_line and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = input.readline(1024 * 1024)
            log("skipped an input line longer than %d bytes" % max_line)
            continue
        yield line
