"""Tracked links: what `{{ track("https://...") }}` becomes in a message.

At send time each URL a template declares with `track(...)` gets an index in the message's
`links` (first appearance across subject, body and html; a URL used twice keeps one index)
and the customer gets ``<public_base_url>/r/<message id>/<index>?s=<signature>``. The
signature is an HMAC (`link_secret`) over the message id and index, so nobody can make a
link that records a click for another message. The redirect target is always the URL
stored in the message at send time, never anything the request carries: the redirect
endpoint cannot be used as an open redirect. The click is `cjo.delivery.clicks`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

# 128 bits of HMAC: unguessable, and short enough for an SMS.
_SIGNATURE_BYTES = 16


def link_signature(secret: str, message_id: str, index: int) -> str:
    digest = hmac.new(secret.encode(), f"{message_id}/{index}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:_SIGNATURE_BYTES]).rstrip(b"=").decode()


def link_signature_ok(secret: str, message_id: str, index: int, signature: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters (a mangled link's).
    expected = link_signature(secret, message_id, index)
    return hmac.compare_digest(expected.encode(), signature.encode())


class LinkTracker:
    """Collects one message's tracked URLs while its template renders; `links` by index."""

    def __init__(self, message_id: str, *, base_url: str, secret: str) -> None:
        self.message_id = message_id
        self.links: list[str] = []
        self._base_url = base_url.rstrip("/")
        self._secret = secret

    def __call__(self, url: str) -> str:
        if url not in self.links:
            self.links.append(url)
        index = self.links.index(url)
        signature = link_signature(self._secret, self.message_id, index)
        return f"{self._base_url}/r/{self.message_id}/{index}?s={signature}"
