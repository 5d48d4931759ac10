"""The raw-ASGI request cycle the three search simulators share (Google Custom Search, Brave, SearXNG).

Each simulator supplies its routing, authentication, request parsing, rendering and error envelopes; this class
runs them in a fixed order on `SimulatorApp`'s request cycle (faults, request log, `/_sim/...` control endpoints):

    route -> authenticate -> queued fault / fail_rate -> parse and validate -> [sim:...] directives in the query
    -> latency -> 200 (or a cut: `midstream_error` answers a 500 instead, `midstream_disconnect` sends half the body)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from ._asgi import Headers, Send, send_json
from ._base import Exchange, Fault, Request, SimulatorApp, SimulatorSettings, parse_json
from ._openai_chat import parse_directives

HEALTH = "health"


@dataclass(frozen=True)
class SearchCall:
    """A parsed, valid request; `text` is the query whose `[sim:...]` directives apply."""

    route: str
    text: str


CallT = TypeVar("CallT", bound=SearchCall)


class SearchError(Exception):
    """An error response: a JSON payload, or raw bytes with their content type."""

    def __init__(self, status: int, payload: object, headers: Headers | None = None, *, raw: bytes | None = None,
                 content_type: bytes = b"text/html; charset=utf-8") -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.headers = headers or []
        self.raw = raw
        self.content_type = content_type

    async def send(self, send: Send, headers: Headers) -> None:
        if self.raw is None:
            await send_json(send, self.status, self.payload, [*headers, *self.headers])
            return
        start = [(b"content-type", self.content_type), (b"content-length", str(len(self.raw)).encode()),
                 *headers, *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": start})
        await send({"type": "http.response.body", "body": self.raw, "more_body": False})


class SearchSimulator(SimulatorApp[SearchError], Generic[CallT]):
    """Base ASGI app; `state` (fault queue, request log, rng) and `clock` are exposed like the other simulators'."""

    errors = (SearchError,)

    def __init__(self, settings: SimulatorSettings) -> None:
        super().__init__(settings)
        self.clock = time.time

    # Hooks -----------------------------------------------------------------------------------------------------

    def route(self, request: Request) -> str:
        """The route name for this request (`HEALTH` for the health check); raise `SearchError` for none."""
        raise NotImplementedError

    def authenticate(self, request: Request, route: str) -> None:
        """Raise `SearchError` when the request's credentials are refused."""

    def parse(self, request: Request, route: str) -> CallT:
        """Validate the request; raise `SearchError` with the API's envelope when it is invalid."""
        raise NotImplementedError

    def render(self, call: CallT, now: datetime) -> tuple[object, Headers]:
        """The 200 body and any extra response headers."""
        raise NotImplementedError

    def fault_error(self, status: int, retry_after: float | None) -> SearchError:
        """The API's error response for an injected status."""
        raise NotImplementedError

    # Request cycle ---------------------------------------------------------------------------------------------

    def logged_body(self, raw: bytes) -> object:
        body, is_json = parse_json(raw)
        return body if is_json else raw.decode("utf-8", "replace") or None

    async def send_error(self, error: SearchError, ex: Exchange) -> None:
        await error.send(ex.send, ex.headers)

    async def handle(self, ex: Exchange) -> None:
        request = ex.request
        route = self.route(request)
        if route == HEALTH:
            await send_json(ex.send, 200, {"status": "ok"}, ex.headers)
            return
        self.authenticate(request, route)
        if not await self.apply_faults(ex, self.queued_faults()):
            return
        call = self.parse(request, route)
        if not await self.settle(ex, parse_directives(call.text)):
            return
        payload, extra = self.render(call, datetime.fromtimestamp(self.clock(), UTC))
        await self.send_body(payload, ex, [*ex.headers, *extra])

    async def send_fault(self, fault: Fault, ex: Exchange, headers: Headers) -> None:
        error = self.fault_error(fault.status, fault.retry_after)
        if fault.retry_after is not None:
            error.headers.append((b"retry-after", f"{fault.retry_after:g}".encode()))
        await error.send(ex.send, ex.headers)
