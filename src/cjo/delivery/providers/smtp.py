"""The email provider: SMTP to a relay, with STARTTLS and AUTH when configured.

A message goes as multipart/alternative (the text, then the HTML) when it has HTML, as
plain text otherwise, in UTF-8. Its `Message-ID` (and MIME boundary) are made from the
message id, so every retry of one message carries the same one and mail systems can
recognise a repeat.

The standard library's smtplib does the talking, in a worker thread per attempt: one
connection per message keeps the provider stateless, and email volumes are far below
what that costs.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr

from cjo.delivery.providers.base import (
    Accepted,
    AttemptResult,
    OutgoingMessage,
    Rejected,
    Retryable,
    short,
)
from cjo.runtime.settings import ProviderSettings


def message_id_header(message_id: str, sender: str) -> str:
    """`<message id@sender's domain>`: stable across retries, unique to the message."""
    _, address = parseaddr(sender)
    domain = address.rpartition("@")[2] or "cjo.invalid"
    return f"<{message_id}@{domain}>"


def compose(message: OutgoingMessage, *, sender: str, at: datetime) -> EmailMessage:
    """The email for `message`, with CRLF line ends as SMTP wants them."""
    email = EmailMessage(policy=SMTP_POLICY)
    email["From"] = sender
    email["To"] = message.address or ""
    email["Subject"] = message.subject or ""
    email["Date"] = format_datetime(at)
    email["Message-ID"] = message_id_header(message.id, sender)
    # base64: safe for any relay (no 8BITMIME needed) and compact for Chinese text.
    email.set_content(message.body or "", subtype="plain", charset="utf-8", cte="base64")
    if message.html:
        email.add_alternative(message.html, subtype="html", charset="utf-8", cte="base64")
        # The boundary from the message id, not random: every retry sends the same bytes
        # (but for Date).
        email.set_boundary(f"cjo-{message.id}")
    return email


class SmtpProvider:
    def __init__(self, settings: ProviderSettings) -> None:
        self._settings = settings
        self._envelope_sender = parseaddr(settings.sender)[1]
        self._tls: ssl.SSLContext | None = None
        if settings.starttls:
            self._tls = ssl.create_default_context(cafile=settings.ca_file)

    async def deliver(self, message: OutgoingMessage) -> AttemptResult:
        if not message.address:
            return Rejected("no email address")
        email = compose(message, sender=self._settings.sender, at=datetime.now(UTC))
        return await asyncio.to_thread(self._send, email, message.address)

    def _send(self, email: EmailMessage, to: str) -> AttemptResult:
        settings = self._settings
        try:
            with smtplib.SMTP(
                settings.host, settings.port, timeout=settings.timeout_seconds
            ) as client:
                if self._tls is not None:
                    client.starttls(context=self._tls)
                if settings.username:
                    password = settings.password.get_secret_value() if settings.password else ""
                    client.login(settings.username, password)
                client.send_message(email, from_addr=self._envelope_sender, to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()), (550, b""))
            return _by_code(code, f"recipient refused: {code} {_text(reply)}")
        except smtplib.SMTPDataError as error:
            code = error.smtp_code
            return _by_code(code, f"message refused: {code} {_text(error.smtp_error)}")
        except (smtplib.SMTPException, OSError) as error:
            # A refused sender, failed AUTH or TLS, a lost connection: the relay or our
            # settings, not this message. Retrying lets a fixed relay take it after all.
            return Retryable(short(f"{type(error).__name__}: {error}"))
        return Accepted("sent", email["Message-ID"])

    async def aclose(self) -> None:
        return None


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def _by_code(code: int, error: str) -> AttemptResult:
    """4xx: the relay says try later; 5xx: it will never take this message."""
    return Retryable(short(error)) if 400 <= code < 500 else Rejected(short(error))


def make(settings: ProviderSettings, *, max_connections: int) -> SmtpProvider:
    """One connection per message, in a worker thread: `max_connections` does not apply."""
    return SmtpProvider(settings)
