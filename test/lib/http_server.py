#!/usr/bin/env python3
"""Scripted HTTP server for jobq's HTTP job tests (stdlib only).

    http_server.py PORTFILE [--tls CERT KEY]

Binds 127.0.0.1 on a free port, writes the port to PORTFILE, serves until
killed.  Paths:
  /status/CODE[?retry_after=V]   answers CODE (Retry-After: V when given)
  /delay/MS                      answers 200 after MS milliseconds
  /slow                          200, then one byte every 100 ms for 60 s
  /huge/BYTES                    200 with a body of BYTES bytes
  /redirect?to=URL[&code=302]    a redirect to URL
  /drop                          headers and half a body, then closes
  /echo                          200, JSON of the request (method, headers, body)
  /flaky/KEY/N                   503 for the first N requests of KEY, then 200
  /stats                         JSON: requests per path, aborted /slow transfers
"""
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Lock()
stats = {"requests": {}, "aborted": 0, "aborted_at": [], "inflight": 0, "max_inflight": 0}
flaky = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        u = urlparse(self.path)
        qs = parse_qs(u.query)
        parts = [p for p in u.path.split("/") if p]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with lock:
            key = "/" + parts[0] if parts else "/"
            stats["requests"][key] = stats["requests"].get(key, 0) + 1
            stats["inflight"] += 1
            stats["max_inflight"] = max(stats["max_inflight"], stats["inflight"])
        try:
            self.route(parts, qs, body)
        finally:
            with lock:
                stats["inflight"] -= 1

    def route(self, parts, qs, body):
        if not parts:
            return self.send(200, b"ok")
        p = parts[0]
        if p == "status":
            h = {"Content-Type": "text/plain"}
            if "retry_after" in qs:
                h["Retry-After"] = qs["retry_after"][0]
            return self.send(int(parts[1]), ("status %s" % parts[1]).encode(), h)
        if p == "delay":
            time.sleep(int(parts[1]) / 1000.0)
            return self.send(200, b"done", {"Content-Type": "text/plain"})
        if p == "slow":
            self.send_response(200)
            self.send_header("Content-Length", "600")
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                with lock:
                    stats["aborted"] += 1
                    stats["aborted_at"].append(time.time())
            self.close_connection = True
            return
        if p == "huge":
            n = int(parts[1])
            return self.send(200, b"a" * n, {"Content-Type": "text/plain"})
        if p == "redirect":
            code = int(qs.get("code", ["302"])[0])
            return self.send(code, b"", {"Location": qs["to"][0]})
        if p == "drop":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"y" * 10)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if p == "echo":
            out = {"method": self.command, "path": self.path,
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": body.decode("utf-8", "replace")}
            return self.send(200, json.dumps(out).encode(), {"Content-Type": "application/json"})
        if p == "flaky":
            k, n = parts[1], int(parts[2])
            with lock:
                flaky[k] = flaky.get(k, 0) + 1
                c = flaky[k]
            if c <= n:
                return self.send(503, b"busy, try again")
            return self.send(200, ("ok after %d calls" % c).encode())
        if p == "stats":
            with lock:
                return self.send(200, json.dumps(stats).encode(), {"Content-Type": "application/json"})
        return self.send(404, b"no such path")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        pass  # clients that hang up (cancelled, refused TLS) are expected


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    if len(sys.argv) >= 5 and sys.argv[2] == "--tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    srv.serve_forever()


if __name__ == "__main__":
    main()
