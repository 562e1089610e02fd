#!/usr/bin/env python3
"""A local HTTP target for bench/run: every request waits DELAY_MS, then
answers 200 with a small JSON body.  Listens on 127.0.0.1 only, on the port
given (0 = any free port, printed on stdout), and stops by itself after
LIFETIME seconds so a killed bench/run never leaves it behind for long.

    http_server.py PORT DELAY_MS LIFETIME_S
"""
import http.server
import socketserver
import sys
import threading
import time

port, delay_ms, lifetime = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
BODY = b'{"ok": true}'


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        time.sleep(delay_ms / 1000.0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


srv = Server(("127.0.0.1", port), Handler)
print(srv.server_address[1], flush=True)
threading.Timer(lifetime, srv.shutdown).start()
srv.serve_forever()
