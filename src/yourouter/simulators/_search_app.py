"""The raw-ASGI request cycle the three search simulators share (Google Custom Search, Brave, SearXNG).

Each simulator supplies its routing, authentication, request parsing, rendering and error envelopes; this class
runs them in a fixed order, with the OpenAI simulator's faults, request log and `/_sim/...` control endpoints:

    route -> authenticate -> queued fault / fail_rate -> parse and validate -> [sim:...] directives in the query
    -> latency -> 200 (or a cut: `midstream_error` answers a 500 instead, `midstream_disconnect` sends half the body)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar
from urllib.parse import parse_qsl

from ._asgi import (
    ClientWatch,
    Headers,
    Receive,
    Scope,
    Send,
    drop_connection,
    header_map,
    read_body,
    run_lifespan,
    send_half_body,
    send_json,
)
from ._openai_chat import parse_directives
from .openai import Fault, SimulatorSettings, SimulatorState, _directive_faults, _parse_json, serve_control

HEALTH = "health"


@dataclass(frozen=True)
class SearchCall:
    """A parsed, valid request; `text` is the query whose `[sim:...]` directives apply."""

    route: str
    text: str


CallT = TypeVar("CallT", bound=SearchCall)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes

    def params(self) -> dict[str, str]:
        """Query-string parameters; a repeated one keeps its last value."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))


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


class SearchSimulator(Generic[CallT]):
    """Base ASGI app; `state` (fault queue, request log, rng) and `clock` are exposed like the other simulators'."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.state = SimulatorState(settings.seed)
        self.clock = time.time

    # Hooks -----------------------------------------------------------------------------------------------------

    def route(self, request: HttpRequest) -> str:
        """The route name for this request (`HEALTH` for the health check); raise `SearchError` for none."""
        raise NotImplementedError

    def authenticate(self, request: HttpRequest, route: str) -> None:
        """Raise `SearchError` when the request's credentials are refused."""

    def parse(self, request: HttpRequest, route: str) -> CallT:
        """Validate the request; raise `SearchError` with the API's envelope when it is invalid."""
        raise NotImplementedError

    def render(self, call: CallT, now: datetime) -> tuple[object, Headers]:
        """The 200 body and any extra response headers."""
        raise NotImplementedError

    def fault_error(self, status: int, retry_after: float | None) -> SearchError:
        """The API's error response for an injected status."""
        raise NotImplementedError

    def response_headers(self, request: HttpRequest) -> Headers:
        """Headers every API response carries."""
        return []

    # Request cycle ---------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        method: str = scope["method"]
        path: str = scope["path"]
        if path.startswith("/_sim/"):
            await serve_control(self.state, method, path, raw, send)
            return
        request = HttpRequest(method, path, scope.get("query_string", b"").decode("latin-1"), header_map(scope), raw)
        body, is_json = _parse_json(raw)
        self.state.record(method, path, request.headers, body if is_json else raw.decode("utf-8", "replace") or None,
                          request.query_string)
        headers = self.response_headers(request)
        watch = ClientWatch(receive)
        try:
            await self._handle(request, watch, send, headers)
        except SearchError as error:
            await error.send(send, headers)
        finally:
            watch.close()

    async def _handle(self, request: HttpRequest, watch: ClientWatch, send: Send, headers: Headers) -> None:
        route = self.route(request)
        if route == HEALTH:
            await send_json(send, 200, {"status": "ok"}, headers)
            return
        self.authenticate(request, route)
        queued = self.state.take_fault()
        if queued is None and self.settings.fail_rate and self.state.rng.random() < self.settings.fail_rate:
            queued = Fault("status", status=self.settings.fail_status)
        cut = queued if queued is not None and queued.kind.startswith("midstream") else None
        if queued is not None and cut is None and not await self._apply_fault(queued, watch, send, headers):
            return
        call = self.parse(request, route)
        for fault in _directive_faults(parse_directives(call.text)):
            if fault.kind.startswith("midstream"):
                cut = cut or fault
            elif not await self._apply_fault(fault, watch, send, headers):
                return
        if not await watch.pause(self.settings.latency_ms / 1000):
            return
        payload, extra = self.render(call, datetime.fromtimestamp(self.clock(), UTC))
        if cut is None:
            await send_json(send, 200, payload, [*headers, *extra])
        elif cut.kind == "midstream_error":
            await self.fault_error(500, None).send(send, headers)
        else:
            await send_half_body(send, payload, watch, [*headers, *extra])

    async def _apply_fault(self, fault: Fault, watch: ClientWatch, send: Send, headers: Headers) -> bool:
        """Apply a pre-response fault; return True when the request should still be answered normally."""
        if fault.kind == "timeout":
            return await watch.pause(fault.delay_ms / 1000)
        if fault.kind == "disconnect":
            await drop_connection(send, watch)
            return False
        error = self.fault_error(fault.status, fault.retry_after)
        if fault.retry_after is not None:
            error.headers.append((b"retry-after", f"{fault.retry_after:g}".encode()))
        await error.send(send, headers)
        return False
