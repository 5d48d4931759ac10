"""The pipeline: the one place that ties authentication, routing, providers, relaying and metering together.

Every API surface calls `Pipeline.handle` with a `Surface` (its credentials reader, error envelope, codec) and a
parser that turns the body into a `Call`; the pipeline does the rest and writes exactly one usage row and one log
line per request. When the chosen deployment speaks the client's dialect the body passes through untouched;
otherwise the request is decoded to the IR once and encoded for the deployment, and the answer comes back the same
way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn, Protocol

import aiohttp
import orjson

from yourouter.asgi import BodyTooLarge, Headers, Request, Send, send_bytes
from yourouter.auth.keys import ClientKey, KeyStore
from yourouter.codecs import (
    DialectCodec,
    StreamEncoder,
    codec,
    embeddings_codec,
    stream_content_type,
    stream_splitter,
)
from yourouter.codecs.common import check_translatable
from yourouter.ir.chat import ChatRequest, EmbeddingRequest
from yourouter.ir.errors import ErrorKind, GatewayError, bad_request
from yourouter.limits.model import Ticket
from yourouter.metering.cost import period_label, period_start, price_record
from yourouter.metering.ledger import UsageLedger, UsageRecord
from yourouter.observability.logs import AccessLog
from yourouter.pipeline.admission import Admission, key_scope, rate_headers
from yourouter.pipeline.guard import RequestGuard
from yourouter.pipeline.http1 import Http1Response
from yourouter.pipeline.media import InlineImages
from yourouter.pipeline.relay import (
    relay_body,
    relay_stream,
    relay_translated_body,
    relay_translated_embeddings,
    relay_translated_stream,
)
from yourouter.pipeline.upstream import UpstreamPool
from yourouter.pricing import PriceBook
from yourouter.providers.base import CHAT, EMBEDDINGS, Provider
from yourouter.routing.catalog import Catalog, Route
from yourouter.routing.policy import RoutingPolicy
from yourouter.storage.repositories import UsageRepository

log = logging.getLogger("yourouter.pipeline")


@dataclass(slots=True)
class Call:
    """What a surface asks of the pipeline, once it has parsed the body."""

    endpoint: str  # what the client called, as the ledger records it ("chat.completions", "messages", ...)
    operation: str  # what providers are asked for: "chat" | "embeddings" | "count_tokens"
    model: str
    body: bytes  # what an upstream of the client's own dialect receives
    stream: bool = False
    strip_usage: bool = False  # the gateway asked the upstream for stream usage the client did not ask for
    #: Headers of the client's that a same-dialect upstream should see (e.g. `anthropic-beta`).
    passthrough_headers: dict[str, str] = field(default_factory=dict)
    #: Decodes the client's body into the IR; called at most once, only when translating.
    decode: Callable[[], ChatRequest] | None = None
    #: Re-frames a same-dialect stream for the client (e.g. Gemini SSE -> JSON array); None = as is.
    stream_framing: Callable[[], Any] | None = None
    #: Answers the call without an upstream when the chosen deployment cannot (e.g. token counting estimated
    #: locally for a provider of another dialect); routing then uses the deployments of the chat operation.
    local_answer: Callable[[], bytes] | None = None
    #: For embeddings: decodes the client's body into the IR, when translating.
    decode_embeddings: Callable[[], EmbeddingRequest] | None = None
    #: Translate even to a deployment of the client's dialect (when the client's form has no upstream twin).
    translate_always: bool = False
    #: The body names the model (OpenAI, Anthropic); Gemini's is in the URL. Aliases rewrite it for the upstream.
    model_in_body: bool = True
    _ir: ChatRequest | None = None
    _embeddings_ir: EmbeddingRequest | None = None
    #: The IR with image URLs fetched, per codec that needed it: fetched once however many attempts follow.
    _inlined: dict[str, ChatRequest] | None = None
    #: The deployment tried last (the one that answered, when one did): what the request is priced by.
    route: Route | None = None
    #: The most output the client allows (`max_tokens` and its kin); None = the gateway's default for estimates.
    max_output: int | None = None
    #: Sees an upstream's successful answer (same dialect, not streamed) before the client does, with the route
    #: that gave it: how a created video task is stored before its id is answered.
    accepted: Callable[[Call, Route, bytes], Awaitable[bytes]] | None = None
    #: The authenticated caller (set by the pipeline once the body is parsed).
    key: ClientKey | None = None
    #: Watches for the client leaving and times the upstream's first byte (set by the pipeline).
    guard: RequestGuard | None = None

    @property
    def routing_operation(self) -> str:
        """The operation deployments are chosen for (a locally answerable call routes like a chat)."""
        return self.operation if self.local_answer is None else CHAT

    def embeddings_ir(self) -> EmbeddingRequest:
        if self._embeddings_ir is None:
            if self.decode_embeddings is None:
                raise bad_request(f"{self.endpoint} cannot be translated to another provider's format.")
            self._embeddings_ir = self.decode_embeddings()
        return self._embeddings_ir

    def ir(self) -> ChatRequest:
        if self._ir is None:
            if self.decode is None:
                raise bad_request(f"{self.endpoint} cannot be translated to another provider's format.")
            self._ir = self.decode()
        return self._ir


class Credentialed(Protocol):
    """An inbound API family's way of finding the caller's key."""

    def credentials(self, request: Request) -> str | None: ...


class Surface(Protocol):
    """What the pipeline needs from an inbound API family."""

    dialect: str

    def credentials(self, request: Request) -> str | None: ...

    def error_body(self, error: GatewayError) -> bytes: ...

    def stream_error_event(self, error: GatewayError) -> bytes: ...

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder: ...


Parser = Callable[[bytes, Request], Call]

_WATCH_AFTER_S = 0.05
_UNTRANSLATABLE = frozenset({"untranslatable_content", "untranslatable_parameter"})
_FAILOVER_KINDS = frozenset({ErrorKind.UPSTREAM, ErrorKind.TIMEOUT, ErrorKind.RATE_LIMIT})
RETRYABLE_UPSTREAM = frozenset({401, 403, 408, 409, 424, 429})  # 424: Bedrock's ModelErrorException
_JSON_TYPES = (b"application/json", b"text/json")
_STATUS_KINDS = {400: ErrorKind.INVALID_REQUEST, 404: ErrorKind.NOT_FOUND, 413: ErrorKind.PAYLOAD_TOO_LARGE,
                 422: ErrorKind.INVALID_REQUEST}


_REQUEST_ID_PREFIX = ""
_request_counter = itertools.count(1)


def _new_request_id_prefix() -> None:
    """Per process; a forked worker (`serve --workers N`) draws its own, or ids would collide across workers."""
    global _REQUEST_ID_PREFIX, _request_counter
    _REQUEST_ID_PREFIX = "req_" + os.urandom(8).hex()  # 64 bits: the ledger keeps one row per request id
    _request_counter = itertools.count(1)


_new_request_id_prefix()
os.register_at_fork(after_in_child=_new_request_id_prefix)


def new_request_id() -> str:
    """Unique across processes (a random per-process prefix) without a system call per request."""
    return f"{_REQUEST_ID_PREFIX}{next(_request_counter):012x}"


def _is_json_content_type(value: bytes | None) -> bool:
    if value is None:
        return True  # absent: judged by parsing the body
    main = value.split(b";", 1)[0].strip().lower()
    return main in _JSON_TYPES or main.endswith(b"+json")


class Pipeline:
    def __init__(self, *, keys: KeyStore, catalog: Catalog, upstream: UpstreamPool, ledger: UsageLedger,
                 max_body_bytes: int, max_attempts: int, images: InlineImages, access_log: AccessLog | None,
                 policy: RoutingPolicy, fallbacks: dict[str, list[str]] | None = None,
                 prices: PriceBook | None = None, admission: Admission | None = None,
                 usage: UsageRepository | None = None) -> None:
        self.keys = keys
        self.catalog = catalog
        self.upstream = upstream
        self.ledger = ledger
        self.max_body_bytes = max_body_bytes
        self.max_attempts = max_attempts
        self.images = images
        self.access_log = access_log
        self.policy = policy
        self.fallbacks = fallbacks or {}
        self.prices = prices or PriceBook()
        self.admission = admission
        self.usage = usage
        self._settling: set[asyncio.Future[Any]] = set()  # networked settlements still running

    async def authenticate(self, request: Request, surface: Credentialed) -> ClientKey:
        token = surface.credentials(request)
        if token is None:
            raise GatewayError(401, ErrorKind.AUTHENTICATION,
                               "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
                               code="missing_api_key")
        key = await self.keys.authenticate(token)
        if key is None:
            raise GatewayError(401, ErrorKind.AUTHENTICATION, "Incorrect API key provided.",
                               code="invalid_api_key")
        if key.disabled:
            raise GatewayError(401, ErrorKind.AUTHENTICATION, "This API key is disabled.", code="key_disabled")
        if key.expires_at is not None and key.expired(time.time()):
            raise GatewayError(401, ErrorKind.AUTHENTICATION, "This API key has expired.", code="key_expired")
        return key

    async def key_report(self, key: ClientKey) -> dict[str, Any]:
        """`GET /v1/key`: the caller's own key, its limits, and what it has used (never the key itself)."""
        now = time.time()
        report: dict[str, Any] = {
            "object": "key", "id": key.id, "name": key.name, "models": list(key.models), "vendors": list(key.vendors),
            "rpm": key.rpm, "tpm": key.tpm, "max_concurrency": key.max_concurrency,
            "budget_usd": float(key.budget_usd) if key.budget_usd is not None else None,
            "budget_period": key.budget_period, "period": period_label(key.budget_period, now),
            "expires_at": dt.datetime.fromtimestamp(key.expires_at, dt.UTC).isoformat() if key.expires_at else None,
            "metadata": dict(key.metadata)}
        since = period_start(key.budget_period, now)
        if self.usage is not None:
            report["requests"] = await self.usage.requests(key.id, since)
            spend = await self.usage.spend(key.id, since)
        else:
            report["requests"], spend = None, Decimal(0)
        state = await self.admission.state(key) if self.admission is not None and key.limited else None
        reserved = Decimal(0)
        if state is not None:
            spend = state.spend_usd if state.spend_usd is not None else spend  # counts rows not yet written
            reserved = state.reserved_usd or Decimal(0)
            report["in_flight"] = state.concurrency
            for name, window in (("requests", state.requests), ("tokens", state.tokens)):
                if window is not None:
                    report[f"rate_limit_{name}"] = {"limit": window.limit, "remaining": max(0, window.remaining),
                                                    "reset_s": round(window.reset_s, 3)}
        report["spend_usd"] = float(spend)
        report["reserved_usd"] = float(reserved)
        report["remaining_usd"] = (float(max(Decimal(0), key.budget_usd - spend - reserved))
                                   if key.budget_usd is not None else None)
        return report

    @staticmethod
    def allowed_routes(key: ClientKey, routes: list[Route], vendor: str | None, model: str) -> list[Route]:
        """The deployments of a model the key may reach (its `vendors`); a 401 when it may reach none."""
        if key.all_vendors:
            return routes
        if vendor and vendor.lower() != "auto" and not key.allows_vendor(vendor.lower()):
            raise GatewayError(401, ErrorKind.PERMISSION, f"This API key is not allowed to use the vendor `{vendor}`.",
                               param="vendor", code="vendor_not_allowed")
        allowed = [route for route in routes if key.allows_vendor(route.provider.vendor)]
        if not allowed:
            raise GatewayError(401, ErrorKind.PERMISSION, f"This API key may not use any vendor serving `{model}`.",
                               param="model", code="vendor_not_allowed")
        return allowed

    async def key_or_error(self, request: Request, send: Send, surface: Surface) -> ClientKey | None:
        """For endpoints outside `handle` (model lists): the caller's key, or None after answering the error."""
        try:
            return await self.authenticate(request, surface)
        except GatewayError as error:
            await send_bytes(send, error.status, surface.error_body(error),
                             [(b"x-request-id", new_request_id().encode()), (b"content-type", b"application/json")])
            return None

    async def read_body(self, request: Request) -> bytes:
        if not _is_json_content_type(request.header(b"content-type")):
            raise bad_request("Content-Type must be application/json.", code="unsupported_content_type")
        try:
            return await request.body(self.max_body_bytes)
        except BodyTooLarge:
            raise GatewayError(413, ErrorKind.PAYLOAD_TOO_LARGE,
                               f"The request body is larger than {self.max_body_bytes} bytes.",
                               code="request_too_large") from None

    async def handle(self, request: Request, send: Send, surface: Surface, endpoint: str, parse: Parser) -> None:
        started = time.perf_counter()
        record = UsageRecord(request_id=new_request_id(), endpoint=endpoint)
        base_headers: Headers = [(b"x-request-id", record.request_id.encode())]
        key: ClientKey | None = None
        call: Call | None = None
        ticket: Ticket | None = None
        try:
            key = await self.authenticate(request, surface)
            record.key_id, record.key_name = key.id, key.name
            call = parse(await self.read_body(request), request)
            call.key = key
            model, pinned = self.catalog.split_vendor_prefix(call.model)
            record.model, record.streamed, record.endpoint = model, call.stream, call.endpoint
            if not key.allows(model):
                raise GatewayError(401, ErrorKind.PERMISSION,
                                   f"This API key is not allowed to use the model `{model}`.",
                                   param="model", code="model_not_allowed")
            header = request.header(b"vendor")
            vendor = pinned or (header.decode("latin-1") if header else None)
            candidates = self.allowed_routes(key, self.catalog.candidates(model, vendor, call.routing_operation),
                                              vendor, model)
            if self.admission is not None and key.limited:
                ticket = await self.admission.admit(record.request_id, key, call.body, call.max_output, candidates)
                if ticket is not None:
                    base_headers += rate_headers(ticket.states.get(key_scope(key)))
            guard = call.guard = RequestGuard(request.receive, _WATCH_AFTER_S)
            if not await guard.run(self._attempt_with_fallbacks(request, send, surface, call, key, model, vendor,
                                                                candidates, record, base_headers, started)):
                record.outcome, record.error_type = "cancelled", "client_disconnected"
                record.status = record.status or 499
        except GatewayError as error:
            await self._send_error(send, surface, error, record, base_headers)
        except Exception as exc:  # a bug of ours: logged with its traceback, answered in the client's envelope
            log.exception("request %s failed", record.request_id)
            if record.status:  # the response had started: nothing more can be sent
                record.outcome, record.error_type = "gateway_error", type(exc).__name__
            else:
                failure = GatewayError(500, ErrorKind.GATEWAY, f"The gateway failed to handle the request "
                                       f"({type(exc).__name__}); request id {record.request_id}.",
                                       code="gateway_error")
                await self._send_error(send, surface, failure, record, base_headers)
        finally:
            record.latency_ms = (time.perf_counter() - started) * 1000
            route = call.route if call is not None else None
            cost = price_record(record, self.prices, None if route is None else route.entry or route.upstream_model)
            if key is not None and key.budget_usd is not None:
                record.budget_period = period_label(key.budget_period, record.created_at)
            self.ledger.record(record)
            if ticket is not None:
                await self.settle(ticket, record.prompt_tokens + record.completion_tokens, cost)
            if self.access_log is not None:
                self.access_log.write(record)

    async def settle(self, ticket: Ticket, tokens: int, cost: Decimal) -> None:
        """Ends an admitted request's (or attempt's) hold on its limits; never fails the request it ends.

        In process it is done on return. A networked backend's settlement runs on without being awaited: the
        answer is already sent, so the request need not wait for a round trip, and a cancelled request cannot
        cancel it. The Redis backend sends the settlements of one event-loop iteration as one command, written
        before any later request's admission on the same connection (the Redis client keeps one connection, in
        order), and they share one future; `drain` waits for those still running at shutdown."""
        assert self.admission is not None
        if self.admission.settles_in_process:
            try:
                await self.admission.settle(ticket, tokens, cost)
            except Exception:  # the backend's entries expire; a failed settle must not fail a finished request
                log.exception("request %s: settling its limits failed", ticket.request_id)
            return
        settling = self.admission.settle_soon(ticket, tokens, cost)
        self._settling.add(settling)
        settling.add_done_callback(functools.partial(self._settled, ticket.request_id))

    def _settled(self, request_id: str, settling: asyncio.Future[Any]) -> None:
        self._settling.discard(settling)
        if not settling.cancelled() and settling.exception() is not None:
            log.error("request %s: settling its limits failed", request_id, exc_info=settling.exception())

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Waits for settlements still running (at shutdown, before the limits backend closes)."""
        if self._settling:
            await asyncio.wait(list(self._settling), timeout=timeout_s)

    async def _send_error(self, send: Send, surface: Surface, error: GatewayError, record: UsageRecord,
                          base_headers: Headers) -> None:
        record.status, record.outcome, record.error_type = error.status, error.outcome, error.code or error.kind
        headers = [*base_headers, *error.headers, *self._routing_headers(record),
                   (b"content-type", b"application/json")]
        if error.retry_after:
            headers.append((b"retry-after", error.retry_after.encode()))
        await send_bytes(send, error.status, surface.error_body(error), headers)

    @staticmethod
    def _routing_headers(record: UsageRecord) -> Headers:
        if record.deployment is None:
            return []
        return [(b"x-yourouter-vendor", (record.vendor or "").encode()),
                (b"x-yourouter-provider", record.deployment.encode()),
                (b"x-yourouter-attempts", str(record.attempts).encode())]

    @staticmethod
    def _same_dialect_body(call: Call, upstream_model: str) -> bytes:
        if not call.model_in_body or upstream_model == call.model:
            return call.body
        payload = orjson.loads(call.body)  # an alias or a vendor prefix: the upstream gets its own model name
        payload["model"] = upstream_model
        return orjson.dumps(payload)

    async def _upstream_body(self, call: Call, route: Route, provider_codec: DialectCodec) -> bytes:
        provider, model = route.provider, route.upstream_model
        if call.operation == EMBEDDINGS:
            return orjson.dumps(embeddings_codec(provider.dialect).encode_embeddings_request(call.embeddings_ir(),
                                                                                             model))
        request = call.ir()
        check_translatable(request, provider.vendor)
        needs_inline = getattr(provider_codec, "needs_inline", None)
        if needs_inline is not None:
            if call._inlined is None:
                call._inlined = {}
            inlined = call._inlined.get(provider.dialect)
            if inlined is None:
                inlined = call._inlined[provider.dialect] = await self.images.inline(request, needs_inline)
            request = inlined
        if request.max_tokens is None and provider.config.default_max_tokens:
            request = dataclasses.replace(request, max_tokens=provider.config.default_max_tokens)
        return orjson.dumps(provider_codec.encode_request(request, model))

    async def _attempt_with_fallbacks(self, request: Request, send: Send, surface: Surface, call: Call, key: ClientKey,
                                      model: str, vendor: str | None, candidates: list[Route], record: UsageRecord,
                                      base_headers: Headers, started: float) -> None:
        """The model's deployments first; when all of them failed upstream, the configured fallback models'
        (translated as needed), within the same vendor pin and the key's models."""
        try:
            await self._attempt(request, send, surface, call, candidates, record, base_headers, started)
            return
        except GatewayError as error:
            if error.kind not in _FAILOVER_KINDS or not self.fallbacks.get(model):
                raise
            errors = [error]
        for fallback in self.fallbacks[model]:
            if not key.allows(fallback) or not self.catalog.serves(fallback):
                continue
            try:
                routes = self.allowed_routes(key, self.catalog.candidates(fallback, vendor, call.routing_operation),
                                              vendor, fallback)
            except GatewayError:
                continue  # the pinned (or the key's) vendors do not serve this fallback
            record.detail = f"fallback:{fallback}"
            try:
                await self._attempt(request, send, surface, call, routes, record, base_headers, started)
                return
            except GatewayError as error:
                if error.kind not in _FAILOVER_KINDS:
                    raise
                errors.append(error)
        raise_final(errors)

    async def _attempt(self, request: Request, send: Send, surface: Surface, call: Call, candidates: list[Route],
                       record: UsageRecord, base_headers: Headers, started: float) -> None:
        """Try deployments in order until one answers; fail over on connection errors, timeouts, 429 and 5xx."""
        errors: list[GatewayError] = []
        ordered = self.policy.order(candidates)
        plan = [ordered[i % len(ordered)] for i in range(self.max_attempts)]  # other deployments first, then again
        tried: dict[str, str | None] = {}  # deployment -> the Retry-After it answered
        for attempt, route in enumerate(plan, start=1):
            provider = route.provider
            if provider.name in tried:  # retrying the same deployment: back off (and honour its Retry-After)
                wait = self.policy.retry_wait(attempt, tried[provider.name])
                if wait is None:
                    continue
                await asyncio.sleep(wait)
            tried[provider.name] = None
            record.attempts, record.vendor, record.deployment = attempt, provider.vendor, provider.name
            call.route = route
            provider_codec = codec(provider.dialect)
            same = provider.dialect == surface.dialect and not call.translate_always
            if call.local_answer is not None and not (same and provider.supports(call.operation)):
                record.status = 200
                headers = [*base_headers, *self._routing_headers(record), (b"content-type", b"application/json")]
                await send_bytes(send, 200, call.local_answer(), headers)
                return
            try:
                body = (self._same_dialect_body(call, route.upstream_model) if same
                        else await self._upstream_body(call, route, provider_codec))
            except GatewayError as refused:
                if refused.code not in _UNTRANSLATABLE or not any(r.provider.dialect == surface.dialect
                                                                  for r in plan):
                    raise
                errors.append(refused)  # this deployment cannot carry the request; one of the client's dialect can
                continue
            url = provider.url(call.operation, route.upstream_model, call.stream)
            headers = [*base_headers, *self._routing_headers(record)]
            slot: Ticket | None = None
            if self.admission is not None and self.admission.deployment_limited(provider):
                try:  # the deployment's own rpm/tpm/max_concurrency, shared by every instance on Redis
                    slot = await self.admission.admit_deployment(f"{record.request_id}#{attempt}", provider,
                                                                 call.body, call.max_output)
                except GatewayError as full:
                    errors.append(full)
                    continue
            health = self.policy.health.of(provider.name)
            health.begin(self.policy.health.now())
            attempt_started = time.perf_counter()
            try:
                request_cm = self.upstream.post(provider, url, body, call.passthrough_headers if same else None)
                assert call.guard is not None  # set by `handle` before any attempt
                response = await call.guard.first_byte(provider.config.first_byte_timeout_s, request_cm.__aenter__)
                try:
                    if response.status >= 500 or response.status in RETRYABLE_UPSTREAM:
                        errors.append(await _upstream_failure(provider, response))  # no local: see raise_final
                        retry_after = tried[provider.name] = errors[-1].retry_after
                        health.failed(self.policy.health.now(), _seconds(retry_after))
                        continue
                    health.succeeded((time.perf_counter() - attempt_started) * 1000)  # this attempt's own TTFB
                    streaming = call.stream and response.content_type == stream_content_type(provider.dialect)
                    if same and streaming:
                        await relay_stream(send, response, headers, record, started,
                                           provider_codec.stream_tap(call.strip_usage), surface.stream_error_event,
                                           call.stream_framing() if call.stream_framing else None)
                    elif same:
                        accepted = None if call.accepted is None else functools.partial(call.accepted, call, route)
                        await relay_body(send, response, headers, record, started, provider_codec, accepted)
                    elif response.status >= 400:
                        raise await _translated_client_error(provider_codec, response)
                    elif call.operation == EMBEDDINGS:
                        await relay_translated_embeddings(send, response, headers, record, started,
                                                          embeddings_codec(provider.dialect),
                                                          embeddings_codec(surface.dialect), call.embeddings_ir())
                    elif streaming:
                        await relay_translated_stream(send, response, headers, record, started,
                                                      provider_codec.stream_decoder(),
                                                      surface.stream_encoder(call.ir()),
                                                      stream_splitter(provider.dialect))
                    else:
                        await relay_translated_body(send, response, headers, record, started, provider_codec,
                                                    codec(surface.dialect), call.ir())
                    return
                finally:
                    await request_cm.__aexit__(None, None, None)
            except TimeoutError:
                health.failed(self.policy.health.now())
                errors.append(GatewayError(500, ErrorKind.TIMEOUT, f"Upstream {provider.name} timed out.",
                                           code="upstream_timeout"))
            except aiohttp.ClientError as exc:
                health.failed(self.policy.health.now())
                errors.append(GatewayError(500, ErrorKind.UPSTREAM,
                                           f"Upstream {provider.name} could not be reached ({type(exc).__name__}).",
                                           code="upstream_unreachable"))
            finally:
                health.end()
                if slot is not None:
                    answered = record.deployment == provider.name and record.status == 200
                    await self.settle(slot, record.prompt_tokens + record.completion_tokens if answered else 0,
                                      Decimal(0))
        raise_final(errors)


def _seconds(retry_after: str | None) -> float | None:
    try:
        return float(retry_after) if retry_after else None
    except ValueError:
        return None


def final_error(errors: list[GatewayError]) -> GatewayError:
    """The most meaningful of the attempts' errors: a 429 when every deployment was rate limited, else the last
    failure that was not a rate limit (a 500)."""
    others = [e for e in errors if e.kind != ErrorKind.RATE_LIMIT]
    if not others:
        return min(errors, key=lambda e: float(e.retry_after or 0) if (e.retry_after or "").isdigit() else 0.0)
    return others[-1]


def raise_final(errors: list[GatewayError]) -> NoReturn:
    """Raises `final_error(errors)` without a reference cycle: a local still holding the exception (here, or the
    `errors` list of the frame that failed) would tie exception -> traceback -> frame -> exception, and every
    failed request would then wait, with all its frames, for the cyclic garbage collector (~30 KB each)."""
    failure = final_error(errors)
    errors.clear()
    try:
        raise failure
    finally:
        del failure


async def _upstream_failure(provider: Provider, response: Http1Response) -> GatewayError:
    """An upstream error that another deployment might not have, phrased without the upstream's secrets."""
    await response.read()
    status = response.status
    if status == 429:
        return GatewayError(429, ErrorKind.RATE_LIMIT, f"Upstream {provider.name} is rate limited; retry later.",
                            code="rate_limit_exceeded", retry_after=response.headers.get("retry-after"))
    if status in (401, 403):
        return GatewayError(500, ErrorKind.UPSTREAM,
                            f"Upstream {provider.name} rejected the gateway's credentials (HTTP {status}).",
                            code="upstream_auth_failed")
    return GatewayError(500, ErrorKind.UPSTREAM, f"Upstream {provider.name} failed with HTTP {status}.",
                        code="upstream_error")


async def _translated_client_error(provider_codec: DialectCodec, response: Http1Response) -> GatewayError:
    """A 4xx the request caused, from an upstream of another dialect: its message, in the client's envelope."""
    body = await response.read()
    message = (provider_codec.upstream_error_message(body)
               or f"The upstream rejected the request (HTTP {response.status}).")
    kind = _STATUS_KINDS.get(response.status, ErrorKind.INVALID_REQUEST)
    status = response.status if response.status in _STATUS_KINDS else 400
    return GatewayError(status, kind, message, code=f"upstream_{response.status}")
