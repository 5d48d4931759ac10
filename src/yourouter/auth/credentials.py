"""Reading the caller's credentials from request headers."""

from __future__ import annotations

import hmac

from yourouter.asgi import Request


def bearer_token(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None."""
    raw = request.header(b"authorization")
    if raw is None:
        return None
    scheme, _, token = raw.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def is_master_key(presented: str | None, master_key: str | None) -> bool:
    if not presented or not master_key:
        return False
    return hmac.compare_digest(presented.encode(), master_key.encode())
