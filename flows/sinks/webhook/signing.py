"""HMAC signatures of webhook POSTs, for the sender and for receivers.

Standard library only: a receiver can copy this file or import it without installing
the job's dependencies. Each signed POST carries `X-Finsentry-Timestamp` and
`X-Finsentry-Signature: sha256=HMAC(secret, "<timestamp>.<body>")`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Finsentry-Timestamp"
SIGNATURE_HEADER = "X-Finsentry-Signature"
EVENT_ID_HEADER = "X-Finsentry-Event-Id"


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The `X-Finsentry-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes | str,
    header: str,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """True if `header` signs `body` at `timestamp` and that time is within tolerance.

    The tolerance bounds how long a captured request can be replayed.
    """
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance_seconds:
        return False
    raw = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(secret, sent_at, raw), header.strip())
