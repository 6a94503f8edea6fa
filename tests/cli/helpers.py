"""A canned HTTP server on 127.0.0.1 for the client commands' tests.

Each route answers a fixed (status, headers, body); every request is
recorded. No sleeps: the server runs in a thread and is shut down after the
test.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs


@attrs.frozen
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@attrs.define
class Canned:
    status: int
    body: bytes = b""
    headers: dict[str, str] = attrs.Factory(dict)


class CannedServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Canned] = {}
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.seen.append(
                    Seen(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                canned = server.routes.get((self.command, self.path)) or Canned(
                    404, b'{"error":"no such route"}'
                )
                self.send_response(canned.status)
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, method: str, path: str, status: int, body: bytes = b"", **headers: str) -> None:
        self.routes[(method, path)] = Canned(
            status, body, {k.replace("_", "-"): v for k, v in headers.items()}
        )

    def redirect(self, method: str, path: str, to: CannedServer) -> None:
        self.route(method, path, 307, Location=to.url + path)

    def __enter__(self) -> CannedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
