"""Real receivers for delivery tests and the dispatch benchmark: an SMTP server and an HTTP one.

Both listen on real sockets on 127.0.0.1 and record exactly what arrived. The HTTP
receiver behaves like a provider that keys on `Idempotency-Key`: the first request with
a key is accepted (a new provider id), a repeat is answered with the same id and counted
as a replay, never as a second message. It can be scripted to fail: answer given
responses first, 500 for the first N requests or for T seconds, or answer slowly.

Run alone (for the benchmark) it serves until SIGTERM and answers `GET /_stats`::

    python -m tests.receivers --port 8765 [--secret S] [--delay 0.01] [--accept-unsigned]
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from cjo.delivery.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from cjo.runtime.stack import free_port

IDEMPOTENCY_HEADER = "idempotency-key"


# ---------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # None: the receiver's own answer ({"id": ...} on 2xx)
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    # Header names in lower case, as HTTP treats them.
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    status: int  # what the receiver answered
    signature_valid: bool | None  # None: the receiver has no secret to check with

    @property
    def key(self) -> str | None:
        return self.headers.get(IDEMPOTENCY_HEADER)

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """A provider on a real socket. Use as a context manager, or start() and stop()."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        delay: float = 0.0,
        port: int = 0,
        path: str = "/",
        accept_unsigned: bool = False,
    ) -> None:
        self.secret = secret
        # Take requests without a signature (the benchmark's bare loop); a wrong one never.
        self.accept_unsigned = accept_unsigned
        self.delay = delay
        self._path = path
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._script: deque[Answer] = deque()
        self._fail_until = 0.0
        self._fail_status = 500
        self._refs: dict[str, str] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment, sent at once: written apart, Nagle's
            # algorithm and the client's delayed ACK would stall every answer ~40 ms.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, headers, payload, delay = receiver._answer(self, body)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                payload = json.dumps(receiver.stats()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that gave up (a timeout test) closed its end: nothing to report.
                return None

        self._server = Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle
    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self._path}"

    # -- scripting
    def script(self, *answers: Answer) -> None:
        """Give these answers to the next requests, in order, then behave normally."""
        with self._lock:
            self._script.extend(answers)

    def fail_first(self, count: int, status: int = 500) -> None:
        self.script(*(Answer(status) for _ in range(count)))

    def fail_for(self, seconds: float, status: int = 500) -> None:
        with self._lock:
            self._fail_until = time.monotonic() + seconds
            self._fail_status = status

    # -- what arrived
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def keys(self) -> Counter[str]:
        """Requests per idempotency key."""
        return Counter(r.key for r in self.requests if r.key is not None)

    def accepted(self) -> set[str]:
        """The keys the provider took (answered 2xx at least once): one message each."""
        return {r.key for r in self.requests if r.key is not None and 200 <= r.status < 300}

    def stats(self) -> dict[str, int]:
        requests = self.requests
        accepted_requests = [r for r in requests if r.key and 200 <= r.status < 300]
        accepted = {r.key for r in accepted_requests}
        return {
            "requests": len(requests),
            "distinct_keys": len({r.key for r in requests if r.key}),
            "accepted": len(accepted),
            # A key accepted again: the provider recognised a message it already had.
            "replays": len(accepted_requests) - len(accepted),
            "bad_signatures": sum(1 for r in requests if r.signature_valid is False),
            "unsigned": sum(1 for r in requests if SIGNATURE_HEADER.lower() not in r.headers),
        }

    def _answer(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, dict[str, str], bytes, float]:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        valid = None
        unsigned = SIGNATURE_HEADER.lower() not in headers
        if self.secret is not None and not (unsigned and self.accept_unsigned):
            valid = verify(
                self.secret,
                timestamp=headers.get(TIMESTAMP_HEADER.lower()),
                signature=headers.get(SIGNATURE_HEADER.lower()),
                body=body,
                now=time.time(),
            )
        key = headers.get(IDEMPOTENCY_HEADER)
        now = time.monotonic()
        with self._lock:
            if self._script:
                answer = self._script.popleft()
            elif now < self._fail_until:
                answer = Answer(self._fail_status)
            elif valid is False:
                answer = Answer(401, body=b'{"error":"bad signature"}')
            else:
                answer = Answer()
            payload = answer.body
            if payload is None:
                if 200 <= answer.status < 300 and key is not None:
                    # An idempotent provider: a repeated key gets the first answer's id.
                    ref = self._refs.setdefault(key, f"ref-{len(self._refs) + 1}")
                    payload = b'{"id":"%s"}' % ref.encode()
                else:
                    payload = b'{"status":%d}' % answer.status
            self._requests.append(
                Request(
                    method=handler.command,
                    path=handler.path,
                    headers=headers,
                    body=body,
                    at=now,
                    status=answer.status,
                    signature_valid=valid,
                )
            )
        return answer.status, answer.headers, payload, answer.delay or self.delay


# ---------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes  # the DATA exactly as received
    at: float
    tls: bool
    login: str | None

    @property
    def message_id(self) -> str | None:
        parsed = message_from_bytes(self.content, policy=default_policy)
        value = parsed["Message-ID"]
        return None if value is None else str(value)


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self._receiver = receiver

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self._receiver._take(session, envelope)


class _Authenticator:
    def __init__(self, login: str, password: str) -> None:
        self._expected = (login.encode(), password.encode())

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == self._expected
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)


class SmtpReceiver:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self._refusals: deque[str] = deque()
        parameters: dict[str, Any] = {}
        if tls_context is not None:
            parameters.update(tls_context=tls_context, require_starttls=True)
        if auth is not None:
            # AUTH is offered, not required: requiring it without TLS makes aiosmtpd warn.
            parameters.update(
                authenticator=_Authenticator(*auth), auth_require_tls=tls_context is not None
            )
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **parameters
        )

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def refuse_next(self, *replies: str) -> None:
        """Answer the next messages' DATA with these replies (e.g. "451 4.3.0 try later")."""
        with self._lock:
            self._refusals.extend(replies)

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def _take(self, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self._refusals:
                return self._refusals.popleft()
            content = envelope.original_content or b""
            login = session.auth_data if session.authenticated else None
            self._mails.append(
                Mail(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=bytes(content),
                    at=time.monotonic(),
                    tls=session.ssl is not None,
                    login=login.decode() if isinstance(login, bytes) else None,
                )
            )
        return "250 Message accepted for delivery"


# ---------------------------------------------------------------------------- alone


def main() -> None:
    parser = argparse.ArgumentParser(description="An HTTP receiver that serves until SIGTERM.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--accept-unsigned", action="store_true")
    options = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with HttpReceiver(
        secret=options.secret,
        delay=options.delay,
        port=options.port,
        accept_unsigned=options.accept_unsigned,
    ) as receiver:
        print(f"ready {receiver.url}", flush=True)  # noqa: T201
        stop.wait()


if __name__ == "__main__":
    main()
