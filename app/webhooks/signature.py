"""`X-Hub-Signature-256`: HMAC-SHA256 of the exact request bytes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_PREFIX = "sha256="


def expected_signature(body: bytes, secret: str) -> str:
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes, header: str, secret: str) -> bool:
    """Whether `header` (the `X-Hub-Signature-256` value) signs `body` with `secret`."""
    if not secret:
        return False
    # Both sides are ASCII hex; compare bytes so a non-ASCII header cannot raise TypeError.
    given = header.strip().encode("ascii", "replace")
    return hmac.compare_digest(given, expected_signature(body, secret).encode())
