"""Local stand-ins for the channel providers, for `make demo` and trying CJO on a laptop.

Every channel of the channel list (`cjo.runtime.channels`) whose provider kind has a
stand-in is pointed at it: a real SMTP server (aiosmtpd) takes what the `smtp` channels
send (email), and a real HTTP server takes what the `http` ones POST (sms, push, wechat,
call, webhook): it checks each request's signature and keys on `Idempotency-Key`, as a
provider would, and keeps what arrived so the demo can show it. `inbox` needs no
stand-in. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr

from cjo.delivery.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from cjo.runtime.channels import CHANNELS, ChannelFacts
from cjo.runtime.settings import ANY_BUSINESS_LINE, Channel, ProviderSettings
from cjo.runtime.stack import free_port

# The stand-in's sender domain: an email's envelope sender is `<channel>@` it.
SENDER_DOMAIN = "cjo.local"


@dataclass
class Delivered:
    """What the stand-in providers received: counts by channel and the last few texts."""

    by_channel: Counter[str] = field(default_factory=Counter)
    keys: set[str] = field(default_factory=set)
    repeats: int = 0
    bad_signatures: int = 0
    samples: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, channel: str, key: str, text: str) -> bool:
        """Record one delivery; False when the key was seen before (a retry)."""
        with self.lock:
            if key in self.keys:
                self.repeats += 1
                return False
            self.keys.add(key)
            self.by_channel[channel] += 1
            self.samples.setdefault(channel, text)
            return True


class _SmtpHandler:
    def __init__(self, delivered: Delivered) -> None:
        self._delivered = delivered

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = message_from_bytes(raw, policy=default_policy)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        key = str(message.get("Message-ID", "")) or secrets.token_hex(8)
        channel = envelope.mail_from.partition("@")[0] if envelope.mail_from else "email"
        self._delivered.take(channel, key, f"{message.get('Subject', '')}: {text}".strip())
        return "250 OK"


def _http_handler(delivered: Delivered, secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            signed = verify(
                secret,
                timestamp=self.headers.get(TIMESTAMP_HEADER),
                signature=self.headers.get(SIGNATURE_HEADER),
                body=body,
                now=time.time(),
            )
            if not signed:
                with delivered.lock:
                    delivered.bad_signatures += 1
                self._answer(401, {"error": "bad signature"})
                return
            payload: dict[str, Any] = json.loads(body)
            key = self.headers.get("Idempotency-Key") or secrets.token_hex(8)
            delivered.take(self.path.strip("/"), key, str(payload.get("body", "")))
            self._answer(200, {"id": f"sandbox-{key[:12]}"})

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # the demo's screen is for the journeys, not access logs

    return Handler


@dataclass
class SandboxProviders:
    smtp_port: int
    http_port: int
    secret: str
    delivered: Delivered

    def providers(self) -> dict[str, dict[Channel, ProviderSettings]]:
        """Settings.providers pointing every channel whose kind has a stand-in at it."""
        by_channel: dict[Channel, ProviderSettings] = {}
        for channel in CHANNELS:
            provider = self.provider(channel)
            if provider is not None:
                by_channel[channel.name] = provider
        return {ANY_BUSINESS_LINE: by_channel}

    def provider(self, channel: ChannelFacts) -> ProviderSettings | None:
        """The stand-in for the channel's kind of provider; None for a kind without one."""
        if channel.provider == "inbox":
            return ProviderSettings(kind="inbox")
        if channel.provider == "smtp":
            return ProviderSettings(
                kind="smtp",
                host="127.0.0.1",
                port=self.smtp_port,
                sender=f"CJO Demo <{channel.name}@{SENDER_DOMAIN}>",
            )
        if channel.provider == "http":
            return ProviderSettings(
                kind="http",
                url=f"http://127.0.0.1:{self.http_port}/{channel.name}",
                secret=SecretStr(self.secret),
                timeout_seconds=5.0,
            )
        return None


@contextmanager
def sandbox_providers() -> Iterator[SandboxProviders]:
    """Start both stand-ins on free local ports; stop them on the way out."""
    delivered = Delivered()
    secret = secrets.token_hex(16)
    smtp_port = free_port()
    smtp = Controller(_SmtpHandler(delivered), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(delivered, secret))
    serving = threading.Thread(target=http.serve_forever, name="sandbox-http", daemon=True)
    serving.start()
    try:
        yield SandboxProviders(smtp_port, int(http.server_address[1]), secret, delivered)
    finally:
        http.shutdown()
        http.server_close()
        smtp.stop()
