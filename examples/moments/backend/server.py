"""Stand-in for moments-server: listens on $PORT and answers the readiness probe.

GET /rpc/v1/health -> 200 {"status": "ok"}; anything else -> 404.
Stops on SIGTERM or SIGINT. Standard library only.
"""
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/rpc/v1/health":
            body = json.dumps({"status": "ok", "service": "moments-backend"}).encode()
            self.send_response(200)
        else:
            body = json.dumps({"error": "not found", "path": self.path}).encode()
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stdout.write("backend: " + (fmt % args) + "\n")
        sys.stdout.flush()


def main():
    port = os.environ.get("PORT")
    if not port:
        sys.exit("backend: PORT is not set (the dev manifest sets it from server.port)")
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"backend: listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
