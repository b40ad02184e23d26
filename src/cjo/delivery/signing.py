"""HMAC-SHA256 signatures on provider traffic, both ways.

CJO signs what it POSTs to a provider, and providers sign their callbacks to CJO, with
the provider's secret. The signed text is `<unix seconds>.<raw body>`, so a captured
request cannot be replayed after `TOLERANCE_SECONDS`, and the body cannot be altered::

    X-CJO-Timestamp: 1764036000
    X-CJO-Signature: sha256=<hex>
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-CJO-Signature"
TIMESTAMP_HEADER = "X-CJO-Timestamp"
TOLERANCE_SECONDS = 300
_SCHEME = "sha256="


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return _SCHEME + digest.hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str,
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """True when the signature is the secret's over this body, made within the tolerance."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    # compare_digest: the time taken must not tell an attacker how much of it was right.
    # As bytes: it refuses str with non-ASCII characters, which a header may carry.
    return hmac.compare_digest(sign(secret, int(timestamp), body).encode(), signature.encode())
