"""Dialect-neutral errors. Each surface renders a `GatewayError` in its own family's envelope."""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"  # a key's budget is spent (OpenAI: 429 insufficient_quota)
    UPSTREAM = "upstream"
    TIMEOUT = "timeout"
    GATEWAY = "gateway"


class GatewayError(Exception):
    """An error the client should see, with the HTTP status it maps to.

    `code` and `param` follow OpenAI's vocabulary (`invalid_api_key`, `model_not_found`, ...); other dialects
    translate `kind` into theirs. `message` is shown to the client: it never contains a secret.
    """

    def __init__(self, status: int, kind: ErrorKind, message: str, *, code: str | None = None,
                 param: str | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after
        #: Response headers that go with the error (e.g. a 429's `x-ratelimit-*`), as (name, value) bytes.
        self.headers: list[tuple[bytes, bytes]] = []

    @property
    def outcome(self) -> str:
        """The ledger's outcome label for a request that ended with this error."""
        return _OUTCOMES.get(self.kind, "gateway_error")


_OUTCOMES = {
    ErrorKind.INVALID_REQUEST: "client_error",
    ErrorKind.PAYLOAD_TOO_LARGE: "client_error",
    ErrorKind.NOT_FOUND: "client_error",
    ErrorKind.AUTHENTICATION: "auth_error",
    ErrorKind.PERMISSION: "auth_error",
    ErrorKind.RATE_LIMIT: "rate_limited",
    ErrorKind.QUOTA: "budget_exceeded",
    ErrorKind.UPSTREAM: "upstream_error",
    ErrorKind.TIMEOUT: "upstream_error",
}


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, ErrorKind.INVALID_REQUEST, message, param=param, code=code)
