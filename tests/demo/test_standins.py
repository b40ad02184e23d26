"""The demo's stand-in providers take real SMTP and signed HTTP deliveries, once per key."""

from __future__ import annotations

import httpx

from cjo.delivery.dispatcher import make_provider
from cjo.delivery.providers.base import Accepted, OutgoingMessage
from cjo.demo.standins import sandbox_providers


def message(channel: str, address: str, attempt: int = 1) -> OutgoingMessage:
    return OutgoingMessage(
        id=f"m-{channel}",
        business_line="retail",
        channel=channel,
        user_id="u-1",
        address=address,
        subject="Your card" if channel == "email" else None,
        body="Your card ships today. Reply TD to opt out",
        html=None,
        template="t",
        locale="en",
        marketing=True,
        journey="j",
        step_id="s",
        attempt=attempt,
    )


async def test_the_sandbox_takes_email_and_signed_http_once_per_key() -> None:
    with sandbox_providers() as sandbox:
        settings = sandbox.providers()["*"]
        sms = make_provider(settings["sms"], max_connections=2)
        email = make_provider(settings["email"], max_connections=1)
        try:
            assert isinstance(await sms.deliver(message("sms", "+8613800000001")), Accepted)
            # A retry of the same message is the same key: taken, but not a second message.
            assert isinstance(await sms.deliver(message("sms", "+8613800000001", 2)), Accepted)
            assert isinstance(await email.deliver(message("email", "li@example.com")), Accepted)
        finally:
            await sms.aclose()
            await email.aclose()
        unsigned = httpx.post(f"http://127.0.0.1:{sandbox.http_port}/sms", json={"body": "x"})
        delivered = sandbox.delivered
        assert unsigned.status_code == 401 and delivered.bad_signatures == 1
        assert delivered.by_channel == {"sms": 1, "email": 1} and delivered.repeats == 1
        assert delivered.samples["sms"] == "Your card ships today. Reply TD to opt out"
        assert delivered.samples["email"].startswith("Your card: Your card ships today")
