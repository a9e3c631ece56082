"""The threads behind the protocol loop, each with one job:

- `ReaderRole`: one thread at a time reads requests and runs each handler
  inline, which answers a quick request with no hand-off between threads.
  When a handler has been running for `takeover` seconds (it blocks, or is
  just slow), a fresh thread takes over reading, so a blocking handler
  delays the others by a few milliseconds, never until it returns.
- `Workers`: threads for stream handlers (long-lived by nature), reused.
- `DeadlineWatcher`: answers `E_TIMEOUT` when a request's deadline passes.
"""

import heapq
import itertools
import queue
import threading
import time

# How long an inline handler may hold the reading thread before another
# thread takes over reading.
TAKEOVER = 0.005
# The watchdog stops ticking after this long without a request.
IDLE = 1.0


class ReaderRole:
    def __init__(self, lines, dispatch, on_error, takeover=TAKEOVER):
        self._lines = lines
        self._dispatch = dispatch
        self._on_error = on_error
        self._takeover = takeover
        self._lock = threading.Lock()
        self._generation = 0
        # When the reading thread's current dispatch started (None: reading).
        self._busy_since = None
        self._last_busy = time.monotonic()
        self._done = threading.Event()
        self._wake = threading.Event()
        self._watchdog_asleep = False

    def run(self):
        """Reads until the input ends; returns then (from any thread)."""
        watchdog = threading.Thread(target=self._watch, daemon=True, name="devctl-watchdog")
        watchdog.start()
        self._start_reader(0)
        self._done.wait()
        self._wake.set()

    def _start_reader(self, generation):
        threading.Thread(target=self._read, args=(generation,), daemon=True,
                         name="devctl-reader-%d" % generation).start()

    def _read(self, generation):
        try:
            for line in self._lines:
                now = time.monotonic()
                with self._lock:
                    self._busy_since = now
                if self._watchdog_asleep:
                    self._wake.set()
                self._dispatch(line)
                with self._lock:
                    if self._generation != generation:
                        return  # another thread reads now
                    self._busy_since = None
                    self._last_busy = time.monotonic()
        except OSError as err:
            self._on_error("stopped reading stdin: %s" % err)
        except ValueError as err:  # the input was closed under us
            self._on_error("stopped reading stdin: %s" % err)
        self._done.set()

    def _watch(self):
        while not self._done.is_set():
            with self._lock:
                idle = self._busy_since is None and time.monotonic() - self._last_busy > IDLE
            if idle:
                self._watchdog_asleep = True
                self._wake.wait()
                self._wake.clear()
                self._watchdog_asleep = False
                continue
            time.sleep(self._takeover)
            with self._lock:
                since = self._busy_since
                if since is None or time.monotonic() - since < self._takeover:
                    continue
                # The reading thread is stuck in a handler: it finishes that
                # one and stops; a new thread goes on reading. (The new one
                # cannot pass its own check before this block ends.)
                try:
                    self._start_reader(self._generation + 1)
                except RuntimeError as err:
                    # No thread to be had: the stuck one reads on when it can.
                    self._on_error("cannot start a reading thread: %s" % err)
                    continue
                self._generation += 1
                self._busy_since = None
                self._last_busy = time.monotonic()


class Workers:
    """Threads for handlers: an idle one takes the next job, and when none
    is idle a new one starts, so a handler that blocks never delays another
    request (as a thread per request would), without paying a thread start
    per request."""

    def __init__(self):
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, function, *args):
        """Runs `function(*args)` on a worker; RuntimeError when no thread
        can be started."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put((function, args))
                return
        thread = threading.Thread(target=self._work, args=(function, args), daemon=True,
                                  name="devctl-worker")
        thread.start()

    def _work(self, function, args):
        while True:
            function(*args)
            # Drop references before waiting: a finished request's data must
            # not live on in an idle thread.
            function = args = None
            with self._lock:
                self._idle += 1
            function, args = self._jobs.get()


class DeadlineWatcher:
    """One thread that answers `E_TIMEOUT` for requests whose deadline
    passed; started on the first deadline."""

    def __init__(self, expire):
        self._expire = expire
        self._heap = []
        self._order = itertools.count()
        self._cv = threading.Condition()
        self._thread = None
        self._stopped = False

    def add(self, ctx):
        with self._cv:
            if len(self._heap) >= 4096:
                # Answered requests wait here until their deadline; under a
                # steady stream of fast requests with long deadlines, drop
                # them now so memory follows what is really in flight.
                live = [entry for entry in self._heap if not entry[2]._answered]
                if len(live) * 2 <= len(self._heap):
                    heapq.heapify(live)
                    self._heap = live
            entry = (ctx.deadline, next(self._order), ctx)
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="devctl-deadlines")
                self._thread.start()
            if self._heap[0] is entry:
                # Only an earlier first deadline changes how long it sleeps.
                self._cv.notify()

    def stop(self):
        with self._cv:
            self._stopped = True
            self._cv.notify()

    def _run(self):
        while True:
            with self._cv:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cv.wait(timeout)
                if self._stopped:
                    return
                _, _, ctx = heapq.heappop(self._heap)
            self._expire(ctx)
