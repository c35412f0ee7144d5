"""A PostgreSQL server that refuses every login, for the "wrong password" path.

The test server trusts every local login, so it cannot show what a wrong password does. This
one speaks just enough of the PostgreSQL frontend/backend protocol (version 3) for libpq: it
declines SSL and GSSAPI encryption, answers the startup message with
AuthenticationCleartextPassword, reads the password the client sends, and answers with the
ErrorResponse a real server sends for a wrong password (SQLSTATE 28P01). The passwords it was
sent are kept, so a test can tell the client really sent one.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from types import TracebackType

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _error_response(user: str) -> bytes:
    fields = [(b"S", b"FATAL"), (b"V", b"FATAL"), (b"C", b"28P01"),
              (b"M", f'password authentication failed for user "{user}"'.encode())]
    body = b"".join(code + value + b"\0" for code, value in fields) + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


class _Handler(socketserver.BaseRequestHandler):
    server: RefusingServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            while True:  # SSL / GSSAPI requests come first, on the same connection
                (length,) = struct.unpack("!I", _read_exact(sock, 4))
                payload = _read_exact(sock, length - 4)
                (code,) = struct.unpack("!I", payload[:4])
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    sock.sendall(b"N")
                    continue
                if code == CANCEL_REQUEST:
                    return
                break
            params = payload[4:].split(b"\0")
            startup = dict(zip(params[0::2], params[1::2], strict=False))
            user = startup.get(b"user", b"").decode()
            sock.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
            kind = _read_exact(sock, 1)
            (length,) = struct.unpack("!I", _read_exact(sock, 4))
            body = _read_exact(sock, length - 4)
            if kind == b"p":
                self.server.passwords.append(body.rstrip(b"\0").decode())
            sock.sendall(_error_response(user))
        except (ConnectionError, struct.error):
            return


class RefusingServer(socketserver.ThreadingTCPServer):
    """Listens on 127.0.0.1 (a free port) until closed; use as a context manager."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.passwords: list[str] = []
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> RefusingServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()
        self.server_close()
