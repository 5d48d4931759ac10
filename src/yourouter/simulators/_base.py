"""What every simulator shares: settings, the fault model, the per-app state, the `/_sim/...` control endpoints and
`SimulatorApp`, the request cycle each simulator subclasses.

`SimulatorApp.__call__` runs the cycle every simulated API follows:

    lifespan | /_sim/... control | record the request -> response headers (request id) -> watch the client
    -> `handle` (the API's routing and answers) -> on an API error, `send_error` (the API's envelope)

and its helpers run the fault steps in one order: the queued fault (or a `fail_rate` draw), then the request's
`[sim:...]` directives, then the configured latency; a midstream fault is kept as `Exchange.cut` and applied by
`send_body` (half a JSON body, or the API's error for `midstream_status`) or `send_stream`. A subclass supplies what
is specific to its API: `handle`, `send_error`, `send_fault` (the error for an injected status) and, where they
differ, `response_headers`, `control`, `request_path`, `logged_body`, `finish` and `shutdown`.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl

import orjson

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
    stream_events,
)
from ._openai_chat import Directives
from ._openai_validation import RequestError

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini", "text-embedding-3-small", "text-embedding-3-large")
FAULT_KINDS = ("status", "timeout", "disconnect", "midstream_disconnect", "midstream_error")
REQUEST_LOG_SIZE = 100

_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library "
    "correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)


@dataclass
class SimulatorSettings:
    """How a simulator behaves; all delays in milliseconds. `models` defaults to OpenAI's catalogue, which the
    other simulators read as "use my own"."""

    api_key: str | None = None
    latency_ms: float = 0
    chunk_delay_ms: float = 0
    fail_rate: float = 0.0
    fail_status: int = 500
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    embedding_dimensions: int = 16
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if not 400 <= self.fail_status <= 599:
            raise ValueError("fail_status must be an HTTP error status (400-599)")
        if self.latency_ms < 0 or self.chunk_delay_ms < 0:
            raise ValueError("latency_ms and chunk_delay_ms must not be negative")
        if self.embedding_dimensions < 1:
            raise ValueError("embedding_dimensions must be at least 1")


@dataclass(frozen=True)
class Fault:
    """One injected failure; see `simulators.openai` for the kinds."""

    kind: str
    status: int = 500
    retry_after: float | None = None
    after_events: int = 3
    delay_ms: float = 30_000

    @classmethod
    def from_json(cls, payload: object) -> tuple[Fault, int]:
        """Parse a `POST /_sim/faults` body into a fault and how many requests it applies to."""
        if not isinstance(payload, dict):
            raise RequestError("Fault must be a JSON object.")
        if payload.get("kind") not in FAULT_KINDS:
            raise RequestError(f"'kind' must be one of {', '.join(FAULT_KINDS)}.", param="kind", code="invalid_value")
        fields = ("status", "count", "retry_after", "after_events", "delay_ms")
        numbers = {key: payload[key] for key in fields if payload.get(key) is not None}
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in numbers.values()):
            raise RequestError("Numeric fault fields must be non-negative numbers.", code="invalid_value")
        status = int(numbers.get("status", 500))
        if not 400 <= status <= 599:
            raise RequestError("'status' must be between 400 and 599.", param="status", code="invalid_value")
        fault = cls(
            kind=payload["kind"],
            status=status,
            retry_after=numbers.get("retry_after"),
            after_events=int(numbers.get("after_events", 3)),
            delay_ms=float(numbers.get("delay_ms", 30_000)),
        )
        return fault, max(1, int(numbers.get("count", 1)))


def directive_faults(directives: Directives) -> list[Fault]:
    """The faults a request's `[sim:...]` directives ask for, in the order they apply."""
    faults: list[Fault] = []
    if directives.delay_ms:
        faults.append(Fault("timeout", delay_ms=directives.delay_ms))
    if directives.status is not None and 400 <= directives.status <= 599:
        faults.append(Fault("status", status=directives.status, retry_after=directives.retry_after))
    if directives.disconnect:
        faults.append(Fault("disconnect"))
    if directives.midstream_disconnect is not None:
        faults.append(Fault("midstream_disconnect", after_events=directives.midstream_disconnect))
    if directives.midstream_error is not None:
        faults.append(Fault("midstream_error", after_events=directives.midstream_error))
    return faults


class SimulatorState:
    """Everything mutable about one simulator app: the fault queue, the request log and the id generator."""

    def __init__(self, seed: int | None) -> None:
        self.rng = random.Random(seed)
        self._faults: deque[list[Any]] = deque()  # [fault, remaining uses]
        self._requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def queue_fault(self, fault: Fault, count: int = 1) -> None:
        self._faults.append([fault, count])

    def take_fault(self) -> Fault | None:
        if not self._faults:
            return None
        entry = self._faults[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self._faults.popleft()
        fault: Fault = entry[0]
        return fault

    def pending_faults(self) -> list[dict[str, Any]]:
        return [{**asdict(fault), "remaining": remaining} for fault, remaining in self._faults]

    def clear_faults(self) -> None:
        self._faults.clear()

    def record(
        self, method: str, path: str, headers: dict[str, str], body: object, query: str = ""
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"method": method, "path": path, "query": query, "headers": headers, "body": body}
        self._requests.append(entry)
        return entry

    def requests(self) -> list[dict[str, Any]]:
        return list(self._requests)

    def clear_requests(self) -> None:
        self._requests.clear()


def error_envelope(message: str, *, error_type: str, param: str | None = None, code: str | None = None) -> object:
    """OpenAI's error envelope (the control endpoints answer with it whatever the simulated API)."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def parse_json(raw: bytes) -> tuple[object, bool]:
    """The parsed body and True, or (None, False) when it is not JSON."""
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return None, False


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or the `RequestError` OpenAI answers for anything else."""
    value, ok = parse_json(raw)
    if not ok:
        raise RequestError(_BAD_JSON)
    if not isinstance(value, dict):
        raise RequestError("Invalid request body: expected a JSON object.", code="invalid_type")
    return value


def control_answer(state: SimulatorState, method: str, path: str, body: Callable[[], object]) -> object | None:
    """The answer to a `/_sim/faults` or `/_sim/requests` call (`body` reads a posted fault), or None for any other
    path; a bad fault raises `RequestError`."""
    if (method, path) == ("POST", "/_sim/faults"):
        fault, count = Fault.from_json(body())
        state.queue_fault(fault, count)
        return {"queued": count, "fault": asdict(fault)}
    if (method, path) == ("GET", "/_sim/faults"):
        return state.pending_faults()
    if (method, path) == ("DELETE", "/_sim/faults"):
        state.clear_faults()
        return {"cleared": True}
    if (method, path) == ("GET", "/_sim/requests"):
        return state.requests()
    if (method, path) == ("DELETE", "/_sim/requests"):
        state.clear_requests()
        return {"cleared": True}
    return None


async def serve_control(state: SimulatorState, method: str, path: str, raw: bytes, send: Send) -> None:
    """The `/_sim/*` control endpoints shared by every simulator; never behind auth, never in the request log.

    Errors here use the OpenAI envelope whatever the simulated provider, so test harnesses see one shape.
    """
    try:
        answer = control_answer(state, method, path, lambda: json_object(raw))
        if answer is None:
            raise RequestError(f"Invalid URL ({method} {path})", status=404)
        await send_json(send, 200, answer)
    except RequestError as error:
        envelope = error_envelope(error.message, error_type="invalid_request_error", param=error.param, code=error.code)
        await send_json(send, error.status, envelope)


def header_value(headers: Headers, name: bytes) -> str:
    """The value of a response header the app set itself (a request id)."""
    return next(value.decode() for key, value in headers if key == name)


# The request cycle ----------------------------------------------------------------------------------------------

E = TypeVar("E", bound=Exception)


@dataclass(frozen=True)
class Request:
    """One HTTP request, its body read whole; `started` is its arrival on the monotonic clock."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    scope: Scope = field(repr=False)
    started: float = 0.0

    def params(self) -> dict[str, str]:
        """Query-string parameters; a repeated one keeps its last value."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))


@dataclass
class Exchange:
    """One request in flight: what came in, how to answer it, the headers every answer carries, and the `cut` a
    midstream fault will make to the answer."""

    request: Request
    watch: ClientWatch
    send: Send
    headers: Headers
    cut: Fault | None = None


class SimulatorApp(Generic[E]):
    """The ASGI application base. `state` is exposed for in-process use (queueing faults, reading the request log).

    `errors` are the exceptions `handle` raises for the API's error answers; `send_error` renders them.
    """

    errors: tuple[type[E], ...] = ()
    midstream_status = 500  # what a `midstream_error` cut answers a non-streaming request with
    logs_query = True  # whether request log entries keep the query string

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.state = SimulatorState(settings.seed)

    # Hooks -------------------------------------------------------------------------------------------------------

    async def handle(self, ex: Exchange) -> None:
        """Route and answer one API request (control endpoints never reach here)."""
        raise NotImplementedError

    async def send_error(self, error: E, ex: Exchange) -> None:
        """Answer one of `errors` with the API's envelope."""
        raise NotImplementedError

    async def send_fault(self, fault: Fault, ex: Exchange, headers: Headers) -> None:
        """Answer an injected `status` fault with the API's error (and `retry-after` when the fault has one)."""
        raise NotImplementedError

    def response_headers(self, request: Request) -> Headers:
        """Headers every API answer carries (a request id)."""
        return []

    async def control(self, method: str, path: str, raw: bytes, send: Send) -> None:
        await serve_control(self.state, method, path, raw, send)

    def request_path(self, scope: Scope) -> str:
        return str(scope["path"])

    def logged_body(self, raw: bytes) -> object:
        return parse_json(raw)[0]

    def finish(self, entry: dict[str, Any], ex: Exchange) -> None:
        """Called when the request is over, with its request log entry."""

    def shutdown(self) -> None:
        """Called at lifespan shutdown."""

    # The cycle ---------------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
            self.shutdown()
            return
        if scope["type"] != "http":
            return
        started = time.monotonic()
        method: str = scope["method"]
        path = self.request_path(scope)
        raw = await read_body(receive)
        if path.startswith("/_sim/"):
            await self.control(method, path, raw, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        request = Request(method, path, query, header_map(scope), raw, scope, started)
        entry = self.state.record(method, path, request.headers, self.logged_body(raw),
                                  query if self.logs_query else "")
        headers = self.response_headers(request)
        ex = Exchange(request, ClientWatch(receive), send, headers)
        try:
            await self.handle(ex)
        except self.errors as error:
            await self.send_error(error, ex)
        finally:
            self.finish(entry, ex)
            ex.watch.close()

    # Faults and answers ------------------------------------------------------------------------------------------

    def queued_faults(self) -> list[Fault]:
        """The next queued fault, else (by `fail_rate`) a `fail_status` one; an empty list when neither."""
        fault = self.state.take_fault()
        if fault is None and self.settings.fail_rate and self.state.rng.random() < self.settings.fail_rate:
            fault = Fault("status", status=self.settings.fail_status)
        return [] if fault is None else [fault]

    async def apply_faults(self, ex: Exchange, faults: Iterable[Fault]) -> bool:
        """Apply pre-response faults in order, keeping the first midstream one as `ex.cut`; False once one of them
        ended the request."""
        for fault in faults:
            if fault.kind.startswith("midstream"):
                ex.cut = ex.cut or fault
            elif not await self.apply_fault(fault, ex):
                return False
        return True

    async def settle(self, ex: Exchange, directives: Directives) -> bool:
        """Apply the directives' faults, then the configured latency; False when the request is over."""
        if not await self.apply_faults(ex, directive_faults(directives)):
            return False
        return await ex.watch.pause(self.settings.latency_ms / 1000)

    async def apply_fault(self, fault: Fault, ex: Exchange, headers: Headers | None = None) -> bool:
        """Apply a pre-response fault; return True when the request should still be answered normally."""
        if fault.kind == "timeout":
            return await ex.watch.pause(fault.delay_ms / 1000)
        if fault.kind == "disconnect":
            await drop_connection(ex.send, ex.watch)
            return False
        await self.send_fault(fault, ex, ex.headers if headers is None else headers)
        return False

    async def send_body(self, payload: object, ex: Exchange, headers: Headers | None = None) -> None:
        """A 200 JSON answer, or what `ex.cut` makes of it."""
        headers = ex.headers if headers is None else headers
        if ex.cut is None:
            await send_json(ex.send, 200, payload, headers)
        elif ex.cut.kind == "midstream_error":
            await self.apply_fault(Fault("status", status=self.midstream_status), ex, headers)
        else:
            await send_half_body(ex.send, payload, ex.watch, headers)

    async def send_stream(self, ex: Exchange, events: list[bytes], start_headers: Headers,
                          error_event: Callable[[int], bytes], tail: bytes = b"") -> None:
        """A streamed answer, `chunk_delay_ms` between events, cut by `ex.cut` (see `stream_events`)."""
        await stream_events(ex.send, events, ex.cut, ex.watch, self.settings.chunk_delay_ms / 1000, start_headers,
                            error_event, tail)
