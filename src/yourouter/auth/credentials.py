"""Reading the caller's credentials from request headers (each API family has its own places)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

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


def header_token(name: bytes) -> Callable[[Request], str | None]:
    def read(request: Request) -> str | None:
        value = request.header(name)
        return value.decode("latin-1").strip() or None if value else None
    return read


def query_token(name: str) -> Callable[[Request], str | None]:
    def read(request: Request) -> str | None:
        return request.query.get(name) or None
    return read


def first_of(*readers: Callable[[Request], str | None]) -> Callable[[Request], str | None]:
    """The first credential found, in the order given."""
    def read(request: Request) -> str | None:
        for reader in readers:
            token = reader(request)
            if token:
                return token
        return None
    return read


def is_master_key(presented: str | None, master_key: str | None) -> bool:
    if not presented or not master_key:
        return False
    return hmac.compare_digest(presented.encode(), master_key.encode())
