"""The providers against real servers: what arrives, byte for byte, and how answers are read."""

from __future__ import annotations

import base64
import ipaddress
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from cjo.delivery.providers.base import Accepted, Rejected, Retryable
from cjo.delivery.providers.http import HttpProvider, request_body, retry_after_seconds
from cjo.delivery.providers.inbox import InboxProvider
from cjo.delivery.providers.smtp import SmtpProvider, compose
from cjo.delivery.signing import verify
from cjo.runtime.settings import ProviderSettings
from cjo.runtime.stack import free_port
from tests.delivery.support import SECRET, http_provider, outgoing
from tests.receivers import Answer, HttpReceiver, SmtpReceiver

SENDER = "Example Bank <news@bank.example>"


def smtp_settings(port: int, **changes: object) -> ProviderSettings:
    values: dict[str, object] = {
        "kind": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "sender": SENDER,
        "timeout_seconds": 5.0,
    }
    values.update(changes)
    return ProviderSettings.model_validate(values)


def statement_email(**changes: object) -> object:
    values: dict[str, object] = {
        "channel": "email",
        "address": "li.lei@example.com",
        "subject": "您的账单 / Your statement",
        "body": "尊敬的李雷：\n本月账单已出，应还 1,234.56 元。",
        "html": "<p>尊敬的李雷：</p><p>本月账单已出，应还 <b>1,234.56</b> 元。</p>",
    }
    values.update(changes)
    return outgoing(**values)


# ------------------------------------------------------------------------ SMTP


async def test_an_email_arrives_as_text_and_html_with_a_message_id_from_the_message(
    smtp: SmtpReceiver,
) -> None:
    message = statement_email()
    provider = SmtpProvider(smtp_settings(smtp.port))

    result = await provider.deliver(message)

    expected_id = f"<{message.id}@bank.example>"
    assert result == Accepted("sent", expected_id)
    [mail] = smtp.mails
    assert mail.mail_from == "news@bank.example"
    assert mail.rcpt_tos == ["li.lei@example.com"]
    # Byte for byte what the provider composes (its Date is the moment it sent).
    received = message_from_bytes(mail.content, policy=default_policy)
    sent_at = parsedate_to_datetime(received["Date"])
    assert mail.content == compose(message, sender=SENDER, at=sent_at).as_bytes()
    # ... and that is a well-formed multipart/alternative email carrying the rendered text.
    head = mail.content.split(b"\r\n\r\n", 1)[0].decode()
    assert head.splitlines()[:7] == [
        "From: Example Bank <news@bank.example>",
        "To: li.lei@example.com",
        "Subject: =?utf-8?b?5oKo55qE6LSm5Y2V?= / Your statement",
        f"Date: {format_datetime(sent_at)}",
        f"Message-ID: {expected_id}",
        "MIME-Version: 1.0",
        "Content-Type: multipart/alternative;",
    ]
    assert received["Subject"] == "您的账单 / Your statement"
    text, html = received.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"
    assert text["Content-Transfer-Encoding"] == "base64"
    crlf_body = "尊敬的李雷：\r\n本月账单已出，应还 1,234.56 元。\r\n"
    assert text.get_payload(decode=True) == crlf_body.encode()
    assert base64.b64decode(text.get_payload()) == crlf_body.encode()
    assert html.get_content() == (
        "<p>尊敬的李雷：</p><p>本月账单已出，应还 <b>1,234.56</b> 元。</p>\r\n"
    )


async def test_a_retried_email_carries_the_same_message_id(smtp: SmtpReceiver) -> None:
    message = statement_email()
    provider = SmtpProvider(smtp_settings(smtp.port))

    await provider.deliver(message)
    await provider.deliver(message)

    assert [mail.message_id for mail in smtp.mails] == [f"<{message.id}@bank.example>"] * 2


async def test_an_email_without_html_is_plain_text(smtp: SmtpReceiver) -> None:
    await SmtpProvider(smtp_settings(smtp.port)).deliver(statement_email(html=None))

    received = message_from_bytes(smtp.mails[0].content, policy=default_policy)
    assert received.get_content_type() == "text/plain"
    assert received.get_content() == "尊敬的李雷：\r\n本月账单已出，应还 1,234.56 元。\r\n"


async def test_a_relay_saying_later_is_retried_and_one_saying_never_is_not(
    smtp: SmtpReceiver,
) -> None:
    provider = SmtpProvider(smtp_settings(smtp.port))
    smtp.refuse_next("451 4.3.0 Try again later", "554 5.6.0 Message refused")

    later = await provider.deliver(statement_email())
    never = await provider.deliver(statement_email())

    assert isinstance(later, Retryable) and "451" in later.error
    assert isinstance(never, Rejected) and "554" in never.error
    assert smtp.mails == []


async def test_no_relay_listening_is_retried() -> None:
    result = await SmtpProvider(smtp_settings(free_port())).deliver(statement_email())

    assert isinstance(result, Retryable)


async def test_an_email_without_an_address_is_rejected(smtp: SmtpReceiver) -> None:
    result = await SmtpProvider(smtp_settings(smtp.port)).deliver(statement_email(address=None))

    assert result == Rejected("no email address")


async def test_auth_logs_in_and_a_wrong_password_is_retried() -> None:
    with SmtpReceiver(auth=("cjo", "s3cret")) as smtp:
        good = smtp_settings(smtp.port, username="cjo", password=SecretStr("s3cret"))
        bad = smtp_settings(smtp.port, username="cjo", password=SecretStr("wrong"))

        accepted = await SmtpProvider(good).deliver(statement_email())
        refused = await SmtpProvider(bad).deliver(statement_email())

        assert isinstance(accepted, Accepted)
        assert [mail.login for mail in smtp.mails] == ["cjo"]
        assert isinstance(refused, Retryable) and "SMTPAuthenticationError" in refused.error


@pytest.fixture
def certificate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1, made with `cryptography` (a dependency)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    made = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(made.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    yield cert_path, key_path


async def test_starttls_encrypts_before_auth_and_data(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    with SmtpReceiver(tls_context=server_tls, auth=("cjo", "s3cret")) as smtp:
        settings = smtp_settings(
            smtp.port,
            starttls=True,
            ca_file=str(cert),
            username="cjo",
            password=SecretStr("s3cret"),
        )

        result = await SmtpProvider(settings).deliver(statement_email())

        assert isinstance(result, Accepted)
        [mail] = smtp.mails
        assert mail.tls and mail.login == "cjo"


async def test_starttls_refuses_a_relay_it_cannot_trust(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    with SmtpReceiver(tls_context=server_tls) as smtp:
        result = await SmtpProvider(smtp_settings(smtp.port, starttls=True)).deliver(
            statement_email()
        )

        assert isinstance(result, Retryable) and "CERTIFICATE_VERIFY_FAILED" in result.error
        assert smtp.mails == []


# ------------------------------------------------------------------------ HTTP


async def test_a_post_carries_the_exact_json_an_idempotency_key_and_a_valid_signature(
    receiver: HttpReceiver,
) -> None:
    message = outgoing(id="0f3c5a9e2b7d4c1e8a6f9b2d4e7c1a3b", user_id="u-42")
    provider = HttpProvider(http_provider(receiver.url))
    before = int(time.time())

    result = await provider.deliver(message)
    await provider.aclose()

    assert result == Accepted("sent", "ref-1")
    [request] = receiver.requests
    assert request.method == "POST"
    assert (
        request.body
        == (
            '{"message_id":"0f3c5a9e2b7d4c1e8a6f9b2d4e7c1a3b","channel":"sms",'
            '"business_line":"retail","to":"13800138000","subject":null,'
            '"body":"【示例银行】您的卡已寄出。拒收请回复R","html":null,"template":"card-welcome",'
            '"locale":"zh-CN","marketing":true,"journey":"card-activation","step":"welcome_sms",'
            '"user_id":"u-42"}'
        ).encode()
    )
    assert request.body == request_body(message)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == message.id
    timestamp = request.headers["x-cjo-timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    assert verify(
        SECRET,
        timestamp=timestamp,
        signature=request.headers["x-cjo-signature"],
        body=request.body,
        now=time.time(),
    )
    # The signature covers the body: the same signature over other bytes does not verify.
    assert not verify(
        SECRET,
        timestamp=timestamp,
        signature=request.headers["x-cjo-signature"],
        body=request.body.replace(b"u-42", b"u-43"),
        now=time.time(),
    )
    assert request.signature_valid is True


async def test_retries_of_a_message_post_the_same_bytes_with_the_same_key(
    receiver: HttpReceiver,
) -> None:
    provider = HttpProvider(http_provider(receiver.url))
    message = outgoing()
    receiver.fail_first(1)

    first = await provider.deliver(message)
    second = await provider.deliver(message)
    await provider.aclose()

    assert isinstance(first, Retryable) and isinstance(second, Accepted)
    one, two = receiver.requests
    assert one.body == two.body and one.key == two.key == message.id


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Answer(500), Retryable('HTTP 500: {"status":500}')),
        (Answer(502, body=b"bad gateway"), Retryable("HTTP 502: bad gateway")),
        (
            Answer(503, {"Retry-After": "7"}, b"busy"),
            Retryable("HTTP 503: busy", retry_after=7.0),
        ),
        (Answer(408, body=b""), Retryable("HTTP 408: ")),
        (
            Answer(429, {"Retry-After": "2"}, b"slow down"),
            Retryable("HTTP 429: slow down", retry_after=2.0, throttled=True),
        ),
        (Answer(400, body=b"no such number"), Rejected("HTTP 400: no such number")),
        (Answer(422, body=b"invalid"), Rejected("HTTP 422: invalid")),
        (Answer(202, body=b"queued"), Accepted("sent", None)),
        (Answer(200, body=b'{"id": 12345}'), Accepted("sent", "12345")),
    ],
)
async def test_answers_are_read_as_accepted_retryable_or_rejected(
    receiver: HttpReceiver, answer: Answer, expected: object
) -> None:
    provider = HttpProvider(http_provider(receiver.url))
    receiver.script(answer)

    result = await provider.deliver(outgoing())
    await provider.aclose()

    assert result == expected


async def test_retry_after_as_an_http_date_is_honoured(receiver: HttpReceiver) -> None:
    provider = HttpProvider(http_provider(receiver.url))
    later = datetime.now(UTC) + timedelta(seconds=30)
    receiver.script(Answer(429, {"Retry-After": format_datetime(later, usegmt=True)}))

    result = await provider.deliver(outgoing())
    await provider.aclose()

    assert isinstance(result, Retryable) and result.throttled
    assert result.retry_after is not None and 28 <= result.retry_after <= 30


def test_retry_after_values() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Sun, 01 Mar 2026 12:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


async def test_no_answer_within_the_timeout_is_retried() -> None:
    with HttpReceiver(secret=SECRET, delay=1.0) as slow:
        provider = HttpProvider(http_provider(slow.url, timeout_seconds=0.2))

        result = await provider.deliver(outgoing())
        await provider.aclose()

    assert result == Retryable("no answer within 0.2s")


async def test_a_refused_connection_is_retried() -> None:
    provider = HttpProvider(http_provider(f"http://127.0.0.1:{free_port()}/"))

    result = await provider.deliver(outgoing())
    await provider.aclose()

    assert isinstance(result, Retryable) and result.error.startswith("ConnectError")


def test_an_http_provider_needs_a_url_and_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        HttpProvider(ProviderSettings(kind="http", url="http://127.0.0.1:1/"))
    with pytest.raises(ValueError, match="url"):
        HttpProvider(ProviderSettings(kind="http", secret=SecretStr("s")))


async def test_the_inbox_delivers_at_once() -> None:
    assert await InboxProvider().deliver(outgoing(channel="inbox")) == Accepted("delivered")
