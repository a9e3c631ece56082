"""devctl_plugin served in memory (devctl_plugin.testing.Harness): what a
host sees for each behaviour the package promises."""

import json
import threading
import time
import unittest

from devctl_plugin import Cancelled, OpError, Plugin
from devctl_plugin.testing import Harness, ProtocolViolation


def sample():
    plugin = Plugin("sample")

    @plugin.op("launch.plan")
    def plan(ctx, input):
        return {"services": [], "seen": {"repo_root": ctx.repo_root, "cwd": ctx.cwd,
                                         "dry_run": ctx.dry_run, "input": input}}

    @plugin.op("validate.run")
    def validate(ctx, input):
        ctx.warn("port 8080 is taken")
        ctx.note("checked 3 things")
        return {"valid": True, "errors": [], "warnings": []}

    @plugin.op("build.run")
    def build(ctx, input):
        raise ValueError("go build failed: exit status 2")

    @plugin.op("prepare.run")
    def prepare(ctx, input):
        raise OpError("E_MISSING_TOOL", "pnpm is not installed", {"tool": "pnpm"})

    @plugin.stream("logs.follow")
    def follow(ctx, input, events):
        for n in range(input.get("count", 2)):
            events.log("line %d" % n)
        if input.get("fail"):
            raise RuntimeError("log file vanished")

    @plugin.command("greet", help="Say hello", args=[("name", "string")])
    def greet(ctx, argv):
        return 3 if argv == ["fail"] else 0

    return plugin


class Handshake(unittest.TestCase):
    def test_is_generated_from_the_registered_handlers(self):
        with Harness(sample()) as harness:
            hs = harness.handshake
        self.assertEqual(hs["type"], "handshake")
        self.assertEqual(hs["protocol_version"], "v2")
        self.assertEqual(hs["plugin_name"], "sample")
        self.assertEqual(hs["capabilities"]["ops"], sorted(
            ["launch.plan", "validate.run", "build.run", "prepare.run", "logs.follow", "command.run"]))
        self.assertEqual(hs["capabilities"]["streams"], ["logs.follow"])
        self.assertEqual(hs["capabilities"]["commands"], [
            {"name": "greet", "help": "Say hello", "args_spec": [{"name": "name", "type": "string"}]}])
        self.assertNotIn("declares", hs)

    def test_watch_globs_are_declared(self):
        plugin = Plugin("w", watch=["config/*.yaml"]).watch("web/vite.config.ts")
        self.assertEqual(plugin.handshake()["declares"], {"watch": ["config/*.yaml", "web/vite.config.ts"]})

    def test_registration_mistakes_fail_at_import_time(self):
        plugin = Plugin("p")
        plugin.op("a")(lambda ctx, i: {})
        with self.assertRaisesRegex(ValueError, "registered twice"):
            plugin.op("a")(lambda ctx, i: {})
        with self.assertRaisesRegex(ValueError, "registered twice"):
            plugin.stream("a")(lambda ctx, i, e: None)
        with self.assertRaisesRegex(ValueError, "non-empty"):
            plugin.op("")
        with self.assertRaisesRegex(ValueError, "non-empty"):
            Plugin(" ")
        plugin.command("c")(lambda ctx, argv: 0)
        with self.assertRaisesRegex(ValueError, "registered twice"):
            plugin.command("c")(lambda ctx, argv: 0)
        with self.assertRaisesRegex(ValueError, "command.run"):
            plugin.op("command.run")(lambda ctx, i: {})
        with self.assertRaisesRegex(ValueError, "pair"):
            plugin.command("d", args=["name"])
        with self.assertRaisesRegex(ValueError, "code"):
            OpError("", "no code")


class Ops(unittest.TestCase):
    def test_output_and_ctx_reach_the_handler(self):
        with Harness(sample()) as harness:
            response = harness.request("launch.plan", {"config": {"a": 1}}, dry_run=True,
                                       repo_root="/repo", cwd="/repo/web")
        self.assertTrue(response.ok, response)
        self.assertEqual(response.output["seen"], {"repo_root": "/repo", "cwd": "/repo/web", "dry_run": True,
                                                   "input": {"config": {"a": 1}}})

    def test_missing_input_is_an_empty_object_and_a_wrong_one_is_refused(self):
        with Harness(sample()) as harness:
            self.assertEqual(harness.request("launch.plan").output["seen"]["input"], {})
            wrong = harness.request("launch.plan", [1, 2])
        self.assertEqual(wrong.code, "E_RUNTIME")
        self.assertIn("invalid input for launch.plan", wrong.error["message"])

    def test_warnings_and_notes_travel_with_the_response(self):
        with Harness(sample()) as harness:
            response = harness.request("validate.run", {"config": {}})
        self.assertEqual(response.warnings, [{"level": "warn", "message": "port 8080 is taken"}])
        self.assertEqual(response.notes, [{"level": "info", "message": "checked 3 things"}])

    def test_an_unknown_op_is_unsupported_at_once(self):
        with Harness(sample()) as harness:
            started = time.monotonic()
            response = harness.request("nope.run", {})
            elapsed = time.monotonic() - started
        self.assertEqual(response.code, "E_UNSUPPORTED")
        self.assertIn("nope.run", response.error["message"])
        self.assertLess(elapsed, 0.5)

    def test_an_exception_is_e_runtime_with_its_message_and_the_plugin_lives_on(self):
        with Harness(sample()) as harness:
            failed = harness.request("build.run", {})
            after = harness.request("validate.run", {})
        self.assertFalse(failed.ok)
        self.assertEqual(failed.code, "E_RUNTIME")
        self.assertIn("go build failed: exit status 2", failed.error["message"])
        self.assertTrue(after.ok)

    def test_op_error_is_answered_verbatim(self):
        with Harness(sample()) as harness:
            response = harness.request("prepare.run", {})
        self.assertEqual(response.error, {"code": "E_MISSING_TOOL", "message": "pnpm is not installed",
                                          "details": {"tool": "pnpm"}})

    def test_async_handlers_are_awaited(self):
        import asyncio

        plugin = Plugin("p")

        @plugin.op("launch.plan")
        async def plan(ctx, input):
            await asyncio.sleep(0.01)
            return {"services": []}

        @plugin.command("wait")
        async def wait(ctx, argv):
            await asyncio.sleep(0)
            return 4

        with Harness(plugin) as harness:
            self.assertEqual(harness.request("launch.plan").output, {"services": []})
            self.assertEqual(harness.run_command("wait").output, {"exit_code": 4})

    def test_a_decorator_without_its_name_says_how_to_write_it(self):
        plugin = Plugin("p")
        with self.assertRaisesRegex(ValueError, r'@plugin.op\("launch.plan"\)'):
            @plugin.op
            def plan(ctx, input):
                return {}

    def test_output_that_is_not_json_is_still_one_answer(self):
        plugin = Plugin("p")
        plugin.op("nan")(lambda ctx, i: {"x": float("nan")})
        plugin.op("set")(lambda ctx, i: {"x": {1, 2}})
        with Harness(plugin) as harness:
            for op in ("nan", "set"):
                response = harness.request(op)
                self.assertEqual(response.code, "E_RUNTIME", response)
                self.assertIn("not JSON-encodable", response.error["message"])


class Encoding(unittest.TestCase):
    def test_lone_surrogates_become_replacement_characters_not_broken_frames(self):
        plugin = Plugin("p")
        # What os.listdir gives for a file name that is not UTF-8.
        plugin.op("names")(lambda ctx, i: {"names": ["ok", "bad\udcff.txt"], "unicode": "é✓"})
        with Harness(plugin) as harness:
            response = harness.request("names")
        self.assertTrue(response.ok, response)
        self.assertEqual(response.output["names"], ["ok", "bad\ufffd.txt"])
        self.assertEqual(response.output["unicode"], "é✓")


class Concurrency(unittest.TestCase):
    def test_a_blocked_handler_does_not_stall_the_others(self):
        release = threading.Event()
        plugin = Plugin("p")
        plugin.op("slow")(lambda ctx, i: release.wait(5) and {"slow": True})
        plugin.op("fast")(lambda ctx, i: {"n": i["n"]})
        with Harness(plugin) as harness:
            slow = harness.send("slow")
            fast = [harness.send("fast", {"n": n}) for n in range(20)]
            for n, request_id in enumerate(fast):
                self.assertEqual(harness.response(request_id).output, {"n": n})
            release.set()
            self.assertEqual(harness.response(slow).output, {"slow": True})


class Deadlines(unittest.TestCase):
    def test_a_missed_deadline_is_e_timeout_and_the_late_answer_is_dropped(self):
        finished = threading.Event()
        seen_cancel = []

        def hang(ctx, i):
            seen_cancel.append(ctx.wait(5))
            finished.set()
            return {"late": True}

        plugin = Plugin("p")
        plugin.op("hang")(hang)
        plugin.op("ping")(lambda ctx, i: {})
        with Harness(plugin) as harness:
            started = time.monotonic()
            response = harness.request("hang", deadline_ms=100)
            elapsed = time.monotonic() - started
            self.assertTrue(finished.wait(2))
            harness.request("ping")  # the late answer would have arrived before this one
        self.assertEqual(response.code, "E_TIMEOUT")
        self.assertIn("100 ms", response.error["message"])
        self.assertLess(elapsed, 1.0)
        self.assertEqual(seen_cancel, [True], "the handler's ctx.cancelled is set at the deadline")

    def test_answered_requests_do_not_pile_up_until_their_deadline(self):
        plugin = Plugin("p")
        plugin.op("ping")(lambda ctx, i: {})
        with Harness(plugin) as harness:
            ids = [harness.send("ping", deadline_ms=60000) for _ in range(6000)]
            for request_id in ids:
                self.assertTrue(harness.response(request_id).ok)
            self.assertLess(len(harness.server._deadlines._heap), 4096 + 1)

    def test_hostile_deadlines_are_ignored_not_obeyed(self):
        plugin = Plugin("p")
        plugin.op("ping")(lambda ctx, i: {"deadline_ms": ctx.deadline_ms})
        with Harness(plugin) as harness:
            for value in ("100", 1e30, -5, 0, True, None):
                response = harness.request("ping", deadline_ms=value)
                self.assertTrue(response.ok, (value, response))
                self.assertIsNone(response.output["deadline_ms"])
            self.assertEqual(harness.request("ping", deadline_ms=30000).output, {"deadline_ms": 30000})


class Streams(unittest.TestCase):
    def test_the_stream_id_comes_first_then_events_then_end(self):
        with Harness(sample()) as harness:
            response = harness.request("logs.follow", {"count": 3})
            stream_id = response.output["stream_id"]
            events = harness.events(stream_id)
        self.assertEqual([e.get("message") for e in events[:-1]], ["line 0", "line 1", "line 2"])
        self.assertTrue(all(e["stream_id"] == stream_id for e in events))
        self.assertEqual(events[-1], {"type": "event", "stream_id": stream_id, "event": "end", "ok": True})

    def test_a_failing_stream_ends_not_ok_with_the_message(self):
        with Harness(sample()) as harness:
            stream_id = harness.request("logs.follow", {"count": 1, "fail": True}).output["stream_id"]
            end = harness.events(stream_id)[-1]
        self.assertEqual(end["ok"], False)
        self.assertIn("log file vanished", end["message"])

    def test_two_streams_get_distinct_ids(self):
        with Harness(sample()) as harness:
            a = harness.request("logs.follow", {"count": 0}).output["stream_id"]
            b = harness.request("logs.follow", {"count": 0}).output["stream_id"]
        self.assertNotEqual(a, b)

    def test_a_follow_stream_ends_when_stdin_closes(self):
        stopped = threading.Event()

        def tail(ctx, input, events):
            try:
                while True:
                    events.log("tick")
                    if ctx.wait(0.01):
                        break
            finally:
                stopped.set()

        plugin = Plugin("p")
        plugin.stream("tail")(tail)
        harness = Harness(plugin)
        stream_id = harness.request("tail").output["stream_id"]
        started = time.monotonic()
        harness.finish()
        self.assertLess(time.monotonic() - started, 1.0)
        events = harness._events[stream_id]
        self.assertEqual(events[-1]["event"], "end")
        self.assertEqual(events[-1]["ok"], False)
        self.assertEqual(sum(1 for e in events if e["event"] == "end"), 1)
        self.assertTrue(stopped.wait(1), "the handler saw the cancellation")

    def test_sending_after_the_end_raises_cancelled(self):
        plugin = Plugin("p")
        plugin.stream("s")(lambda ctx, i, events: None)
        box = {}
        plugin.stream("keep")(lambda ctx, i, events: box.setdefault("events", events))
        with Harness(plugin) as harness:
            harness.events(harness.request("keep").output["stream_id"])
        with self.assertRaises(Cancelled):
            box["events"].log("too late")


class Commands(unittest.TestCase):
    def test_a_command_answers_its_exit_code(self):
        with Harness(sample()) as harness:
            self.assertEqual(harness.run_command("greet", ["bob"]).output, {"exit_code": 0})
            self.assertEqual(harness.run_command("greet", ["fail"]).output, {"exit_code": 3})
            unknown = harness.run_command("nope")
            bad = harness.request("command.run", {"name": "greet", "argv": "bob"})
        self.assertEqual(unknown.code, "E_UNSUPPORTED")
        self.assertIn("'nope'", unknown.error["message"])
        self.assertEqual(bad.code, "E_RUNTIME")

    def test_without_commands_command_run_is_unsupported(self):
        plugin = Plugin("p")
        plugin.op("launch.plan")(lambda ctx, i: {"services": []})
        with Harness(plugin) as harness:
            self.assertEqual(harness.run_command("x").code, "E_UNSUPPORTED")


class Input(unittest.TestCase):
    def test_bad_lines_are_skipped_or_answered_and_the_plugin_keeps_answering(self):
        with Harness(sample()) as harness:
            harness.send_line("")
            harness.send_line("   ")
            harness.send_line("{not json")
            harness.send_line("[1,2]")
            harness.send_line(json.dumps({"type": "request", "op": "launch.plan"}))
            harness.send_line(json.dumps({"type": "response", "request_id": "x", "ok": True}))
            harness.send_line(json.dumps({"type": "request", "request_id": "no-op"}))
            harness.send_line(json.dumps({"type": "request", "request_id": "bad-ctx", "op": "launch.plan",
                                          "ctx": "repo"}))
            no_op = harness.response("no-op")
            bad_ctx = harness.response("bad-ctx")
            after = harness.request("launch.plan", {})
            self.assertEqual(harness.unsolicited, [])
        self.assertEqual(no_op.code, "E_PROTOCOL_UNEXPECTED_FRAME")
        self.assertEqual(bad_ctx.code, "E_PROTOCOL_UNEXPECTED_FRAME")
        self.assertTrue(after.ok)

    def test_an_overlong_line_is_skipped_without_buffering_it_whole(self):
        with Harness(sample(), max_line=1024) as harness:
            harness.send_line(json.dumps({"type": "request", "request_id": "big", "op": "launch.plan",
                                          "input": {"pad": "x" * 5000}}))
            after = harness.request("launch.plan", {})
        self.assertTrue(after.ok)
        self.assertNotIn("big", harness._responses)


class Shutdown(unittest.TestCase):
    def test_work_in_flight_is_answered_e_canceled_at_eof(self):
        plugin = Plugin("p")
        plugin.op("hang")(lambda ctx, i: ctx.wait(30) or {})
        plugin.op("quick")(lambda ctx, i: time.sleep(0.05) or {"done": True})
        harness = Harness(plugin)
        hang = harness.send("hang")
        quick = harness.send("quick")
        started = time.monotonic()
        harness.finish()
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertEqual(harness.response(hang).code, "E_CANCELED")
        self.assertEqual(harness.response(quick).output, {"done": True}, "finishing work gets a grace")

    def test_the_harness_rejects_a_plugin_that_corrupts_frames(self):
        plugin = Plugin("p")
        plugin.op("ping")(lambda ctx, i: {})
        harness = Harness(plugin)
        harness.server._output.write(b"hello from a stray print\n")
        harness.server._output.flush()
        with self.assertRaises(ProtocolViolation):
            harness.request("ping")
        with self.assertRaises(ProtocolViolation):
            harness.finish()


if __name__ == "__main__":
    unittest.main()
