"""Stand-in for the Vite dev server: shows the VITE_* values it was started with.

GET /          -> an HTML page listing every VITE_* variable
GET /env.json  -> the same as JSON
Usage: python3 server.py --port PORT. Standard library only.
"""
import argparse
import html
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def vite_env():
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("VITE_")}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/env.json":
            body = json.dumps(vite_env(), indent=2).encode()
            kind = "application/json"
        elif self.path == "/":
            rows = "".join(
                f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>"
                for k, v in vite_env().items()
            )
            body = (
                "<!doctype html><html><head><meta charset='utf-8'><title>Moments web (dev)</title></head>"
                f"<body><h1>Moments web (dev stand-in)</h1><table>{rows}</table></body></html>"
            ).encode()
            kind = "text/html; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stdout.write("web: " + (fmt % args) + "\n")
        sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"web: listening on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
