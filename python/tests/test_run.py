"""plugin.run() in a real child process over real pipes: stdout carries
frames only, whatever the handlers print or start, and the process exits 0
soon after stdin closes."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PLUGIN = textwrap.dedent('''
    import subprocess, sys, threading, time
    from devctl_plugin import Plugin

    plugin = Plugin("noisy")

    @plugin.op("launch.plan")
    def plan(ctx, input):
        print("a stray print")
        sys.stdout.write("a stray write\\n")
        # A child that writes to its stdout and reads its stdin: neither may
        # touch the protocol's pipes.
        out = subprocess.run(["sh", "-c", "echo from a child; cat"], check=True)
        return {"services": []}

    @plugin.op("hang")
    def hang(ctx, input):
        ctx.wait(60)
        return {}

    @plugin.op("linger")
    def linger(ctx, input):
        # A non-daemon thread that outlives the request: it must not keep
        # the plugin alive once stdin closes.
        threading.Thread(target=time.sleep, args=(60,)).start()
        return {}

    if __name__ == "__main__":
        plugin.run()
''')


class Run(unittest.TestCase):
    def start(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(lambda: os.path.isdir(directory) and __import__("shutil").rmtree(directory))
        script = os.path.join(directory, "plugin.py")
        with open(script, "w") as f:
            f.write(PLUGIN)
        env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
        process = subprocess.Popen([sys.executable, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env)
        self.addCleanup(process.stderr.close)
        self.addCleanup(process.stdout.close)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process

    def test_stdout_carries_frames_only_and_eof_exits_zero(self):
        process = self.start()
        requests = [
            {"type": "request", "request_id": "1", "op": "launch.plan", "ctx": {"dry_run": True}},
            {"type": "request", "request_id": "2", "op": "hang", "ctx": {}},
            {"type": "request", "request_id": "3", "op": "launch.plan", "ctx": {}},
            {"type": "request", "request_id": "4", "op": "linger", "ctx": {}},
        ]
        payload = "".join(json.dumps(r) + "\n" for r in requests).encode()
        # Write, then wait for both answers before closing stdin.
        process.stdin.write(payload)
        process.stdin.flush()
        lines = [process.stdout.readline() for _ in range(4)]
        started = time.monotonic()
        process.stdin.close()
        rest = process.stdout.read()
        code = process.wait(5)
        elapsed = time.monotonic() - started
        stderr = process.stderr.read().decode()
        frames = [json.loads(line) for line in lines + rest.splitlines()]
        self.assertEqual(frames[0]["type"], "handshake")
        by_id = {f["request_id"]: f for f in frames[1:]}
        self.assertEqual(sorted(by_id), ["1", "2", "3", "4"], frames)
        self.assertTrue(by_id["1"]["ok"] and by_id["3"]["ok"], frames)
        self.assertEqual(by_id["2"]["error"]["code"], "E_CANCELED")
        self.assertEqual(code, 0)
        self.assertLess(elapsed, 2.0)
        for text in ("a stray print", "a stray write", "from a child"):
            self.assertIn(text, stderr)


if __name__ == "__main__":
    unittest.main()
