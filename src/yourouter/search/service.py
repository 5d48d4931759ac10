"""`GET /customsearch/v1`: authenticate, validate as Google does, answer from the cache or from the engines in
routing order (failing over between them before anything is sent), price per query, meter.

Search has its own attempt loop rather than the chat pipeline's: it is a GET whose query string each engine shapes
differently, answered in one shape; everything around it (keys, vendor pins, limits and budgets, routing order and
health, the ledger) is the same parts the pipeline uses.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import yarl

from yourouter.asgi import Headers, Request, Send, send_bytes
from yourouter.auth.credentials import bearer_token, first_of, header_token, query_token
from yourouter.auth.keys import ClientKey
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.limits.model import Ticket
from yourouter.metering.cost import period_label
from yourouter.metering.ledger import UsageRecord
from yourouter.pipeline.admission import key_scope, rate_headers
from yourouter.pipeline.core import RETRYABLE_UPSTREAM, Pipeline, new_request_id, raise_final
from yourouter.pricing import PriceBook
from yourouter.providers.base import SEARCH, Provider
from yourouter.routing.catalog import Catalog, Route
from yourouter.search.cache import SearchCache, cache_key
from yourouter.search.engines import engine
from yourouter.search.query import SearchError, SearchQuery, parse_query
from yourouter.search.results import count_items

MODEL = "search"  # what keys name to be allowed search, and what search deployments serve
_CREDENTIALS = first_of(bearer_token, header_token(b"x-api-key"), query_token("key"))
_JSON: Headers = [(b"content-type", b"application/json; charset=UTF-8")]
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_REASONS = {ErrorKind.INVALID_REQUEST: "invalid", ErrorKind.AUTHENTICATION: "authError",
            ErrorKind.PERMISSION: "forbidden", ErrorKind.NOT_FOUND: "notFound",
            ErrorKind.RATE_LIMIT: "rateLimitExceeded", ErrorKind.QUOTA: "quotaExceeded",
            ErrorKind.UPSTREAM: "backendError", ErrorKind.TIMEOUT: "backendError", ErrorKind.GATEWAY: "backendError"}


def error_body(error: GatewayError) -> bytes:
    """Google's legacy JSON error envelope."""
    reason = error.reason if isinstance(error, SearchError) else _REASONS.get(error.kind, "backendError")
    status = _STATUS_NAMES.get(error.status, "INTERNAL" if error.status >= 500 else "INVALID_ARGUMENT")
    entry: dict[str, Any] = {"message": error.message, "domain": "global", "reason": reason}
    if error.param:
        entry.update(location=error.param, locationType="parameter")
    return orjson.dumps({"error": {"code": error.status, "message": error.message, "errors": [entry],
                                   "status": status}})


class SearchSurface:
    """What `Pipeline.authenticate` needs from the search family."""

    dialect = "google-search"

    def credentials(self, request: Request) -> str | None:
        return _CREDENTIALS(request)

    def error_body(self, error: GatewayError) -> bytes:
        return error_body(error)


SURFACE = SearchSurface()


class SearchService:
    def __init__(self, pipeline: Pipeline, catalog: Catalog, prices: PriceBook, cache: SearchCache | None) -> None:
        self._pipeline = pipeline
        self._catalog = catalog
        self._prices = prices
        self._cache = cache

    def price(self, provider: Provider) -> Decimal | None:
        """Per query: `prices` by deployment name, else the shipped price of its engine type."""
        for name in (provider.name, str(provider.config.type)):
            found = self._prices.lookup(name)
            if found is not None:
                return found.per_query
        return None

    async def handle(self, request: Request, send: Send) -> None:
        pipeline = self._pipeline
        started = time.perf_counter()
        record = UsageRecord(request_id=new_request_id(), endpoint="customsearch", model=MODEL)
        headers: Headers = [(b"x-request-id", record.request_id.encode())]
        ticket: Ticket | None = None
        cost = Decimal(0)
        key: ClientKey | None = None
        try:
            key = await pipeline.authenticate(request, SURFACE)
            record.key_id, record.key_name = key.id, key.name
            query = parse_query(request.query)
            if not key.allows(MODEL):
                raise GatewayError(401, ErrorKind.PERMISSION, "This API key is not allowed to use web search.",
                                   param="key", code="model_not_allowed")
            header = request.header(b"vendor")
            vendor = header.decode("latin-1") if header else None
            routes = pipeline.allowed_routes(key, self._catalog.candidates(MODEL, vendor, SEARCH), vendor, MODEL)
            pinned = vendor.lower() if vendor and vendor.lower() != "auto" else None
            digest = cache_key(pinned, query.params())
            cached = await self._cache.get(digest) if self._cache is not None else None
            if pipeline.admission is not None and key.limited:
                prices = [p for p in (self.price(r.provider) for r in routes) if p is not None]
                reserve = Decimal(0) if cached is not None else max(prices, default=Decimal(0))
                ticket = await pipeline.admission.admit(record.request_id, key, b"", 0, routes, reserve_usd=reserve)
                if ticket is not None:
                    headers += rate_headers(ticket.states.get(key_scope(key)))
            if cached is not None:
                body, meta = cached
                record.status, record.detail = 200, "cache hit"
                record.vendor, record.deployment = meta.get("vendor"), meta.get("deployment")
                await send_bytes(send, 200, body, [*headers, *_JSON, (b"x-yourouter-cache", b"hit"),
                                                   (b"x-yourouter-vendor", meta.get("vendor", "").encode()),
                                                   (b"x-yourouter-provider", meta.get("deployment", "").encode())])
                return
            cost = await self._search(query, routes, record, headers, send, digest)
        except GatewayError as error:
            record.status, record.outcome, record.error_type = error.status, error.outcome, error.code or error.kind
            extra = [(b"retry-after", error.retry_after.encode())] if error.retry_after else []
            await send_bytes(send, error.status, error_body(error), [*headers, *error.headers, *extra, *_JSON])
        except Exception as exc:
            failure = GatewayError(500, ErrorKind.GATEWAY, f"The gateway failed to handle the search "
                                   f"({type(exc).__name__}); request id {record.request_id}.", code="gateway_error")
            record.status, record.outcome, record.error_type = 500, "gateway_error", type(exc).__name__
            await send_bytes(send, 500, error_body(failure), [*headers, *_JSON])
        finally:
            record.latency_ms = (time.perf_counter() - started) * 1000
            record.cost_usd = float(cost)
            if key is not None and key.budget_usd is not None:
                record.budget_period = period_label(key.budget_period, record.created_at)
            pipeline.ledger.record(record)
            if pipeline.access_log is not None:
                pipeline.access_log.write(record)
            if ticket is not None:
                await pipeline.settle(ticket, 0, cost)

    async def _search(self, query: SearchQuery, routes: list[Route], record: UsageRecord, headers: Headers,
                      send: Send, digest: str) -> Decimal:
        """Engines in routing order until one answers; returns what the answer costs."""
        policy = self._pipeline.policy
        errors: list[GatewayError] = []
        for attempt, route in enumerate(policy.order(routes)[:self._pipeline.max_attempts], start=1):
            provider = route.provider
            record.attempts, record.vendor, record.deployment = attempt, provider.vendor, provider.name
            search_engine = engine(provider.dialect)
            url, upstream_headers = search_engine.request(query, provider)
            health = policy.health.of(provider.name)
            health.begin(policy.health.now())
            try:
                async with asyncio.timeout(provider.config.first_byte_timeout_s):
                    async with self._pipeline.upstream.session(provider).get(
                            yarl.URL(url, encoded=True), headers=upstream_headers) as response:
                        status, body = response.status, await response.read()
                        retry_after = response.headers.get("retry-after")
            except (aiohttp.ClientError, TimeoutError) as exc:
                health.failed(policy.health.now())
                errors.append(GatewayError(500, ErrorKind.UPSTREAM, f"Search engine {provider.name} could not be "
                                           f"reached ({type(exc).__name__}).", code="upstream_unreachable"))
                continue
            finally:
                health.end()
            if status >= 500 or status in RETRYABLE_UPSTREAM:
                health.failed(policy.health.now())
                kind = ErrorKind.RATE_LIMIT if status == 429 else ErrorKind.UPSTREAM
                errors.append(GatewayError(429 if status == 429 else 500, kind, f"Search engine {provider.name} "
                                           f"failed with HTTP {status}.", code="upstream_error",
                                           retry_after=retry_after if status == 429 else None))
                continue
            if status >= 400:  # the query itself was refused: no other engine would take it either
                message = search_engine.error_message(body) or f"The search engine refused the query (HTTP {status})."
                raise SearchError(400, ErrorKind.INVALID_REQUEST, message, "invalid")
            try:
                answer = search_engine.answer(body, query)
            except (ValueError, TypeError, KeyError, AttributeError):
                health.failed(policy.health.now())
                errors.append(GatewayError(500, ErrorKind.UPSTREAM, f"Search engine {provider.name} sent an "
                                           "unreadable answer.", code="upstream_bad_response"))
                continue
            health.succeeded(None)
            found = count_items(answer)
            price = self.price(provider)
            record.unpriced = price is None
            cost = price if price is not None and found else Decimal(0)  # no results (or an error): nothing to pay
            data = orjson.dumps(answer)
            record.status, record.completion_tokens = 200, 0
            record.detail = f"{found} results"
            await send_bytes(send, 200, data, [*headers, *_JSON, (b"x-yourouter-cache", b"miss"),
                                               (b"x-yourouter-vendor", provider.vendor.encode()),
                                               (b"x-yourouter-provider", provider.name.encode()),
                                               (b"x-yourouter-attempts", str(attempt).encode())])
            if self._cache is not None and found:
                await self._cache.put(digest, data, {"vendor": provider.vendor, "deployment": provider.name})
            return cost
        if not errors:
            raise GatewayError(500, ErrorKind.GATEWAY, "No search engine could take the query.", code="no_engine")
        raise_final(errors)
