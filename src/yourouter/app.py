"""The ASGI application: settings -> gateway parts -> mounted surfaces."""

from __future__ import annotations

import gc
import logging
import os

from sqlalchemy.ext.asyncio import AsyncEngine

from yourouter.asgi import ASGIApp, Message, PathRouter, Receive, Request, Scope, Send, send_bytes, send_json
from yourouter.auth.keys import KeyStore
from yourouter.codecs import openai as openai_codec
from yourouter.config import SETTINGS_ENV, Settings, load_settings
from yourouter.ir.errors import ErrorKind, GatewayError
from yourouter.limits import build_backend
from yourouter.metering.journal import UsageJournal
from yourouter.metering.ledger import COLUMNS, UsageLedger, journal_values
from yourouter.metering.spill import SpillFile
from yourouter.observability.logs import AccessLog
from yourouter.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from yourouter.observability.metrics import Metrics
from yourouter.pipeline.admission import Admission
from yourouter.pipeline.core import Pipeline, new_request_id
from yourouter.pipeline.media import InlineImages
from yourouter.pipeline.upstream import UpstreamPool
from yourouter.pricing import PriceBook
from yourouter.providers.base import VIDEO_TASKS
from yourouter.providers.registry import build_provider
from yourouter.routing.catalog import Catalog
from yourouter.routing.health import BreakerPolicy, HealthBoard
from yourouter.routing.policy import RoutingPolicy
from yourouter.routing.shared import SharedCooldowns
from yourouter.search.cache import build_cache
from yourouter.search.service import SearchService
from yourouter.storage.db import create_engine, database_identity, migrate
from yourouter.storage.reports import UsageReport
from yourouter.storage.repositories import KeyRepository, LedgerSpend, UsageRepository
from yourouter.storage.video_tasks import VideoTaskRepository
from yourouter.surfaces.admin import AdminRoutes
from yourouter.surfaces.anthropic import AnthropicRoutes
from yourouter.surfaces.ark import ArkRoutes
from yourouter.surfaces.gemini import GeminiRoutes
from yourouter.surfaces.openai import OpenAIRoutes
from yourouter.surfaces.search import SearchRoutes
from yourouter.tasks.video import VideoTasks

log = logging.getLogger("yourouter")
#: Level INFO (the default `--log-level info`) turns the per-request access log on; `log_requests: false` too.
access_log = logging.getLogger("yourouter.access")

DEMO_PREFIX = "/_demo/upstream"
#: Set by `yourouter serve --workers N` so every worker process gets the already-resolved settings.


class Gateway:
    """The ASGI app. Everything per-request is prepared here once: no config parsing on the request path."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine = create_engine(settings.database_url)
        self.keys = KeyStore(settings.keys, KeyRepository(self.engine), settings.key_cache_ttl_s)
        self.providers = [build_provider(config) for config in settings.providers]
        self.catalog = Catalog(self.providers)
        routing = settings.routing
        breaker = BreakerPolicy(failures=routing.cooldown_failures, window_s=routing.cooldown_window_s,
                                cooldown_s=routing.cooldown_s)
        self.shared_cooldowns = (SharedCooldowns(settings.redis_url, [p.name for p in self.providers])
                                 if settings.redis_url else None)
        self.health_board = HealthBoard(breaker, listener=self.shared_cooldowns)
        self.prices = PriceBook.from_config(settings.prices)
        self.policy = RoutingPolicy(self.health_board, routing.strategy, routing.retry_backoff_s,
                                    routing.max_retry_wait_s, prices=self.prices)
        self.upstream = UpstreamPool(self.providers)
        self.usage = UsageRepository(self.engine)
        database = database_identity(settings.database_url)
        journal = (UsageJournal(settings.usage.spill_dir, database, COLUMNS, journal_values)
                   if settings.usage.journal and database is not None else None)
        self.ledger = UsageLedger(self.usage, batch_size=settings.usage.batch_size,
                                  flush_interval_s=settings.usage.flush_interval_s,
                                  max_pending=settings.usage.max_pending,
                                  spill=SpillFile(settings.usage.spill_dir, database or "sqlite::memory:"),
                                  journal=journal)
        self.images = InlineImages(settings.media)
        self.access_log = AccessLog() if settings.log_requests and access_log.isEnabledFor(logging.INFO) else None
        limits = settings.limits
        self.limit_backend = build_backend(limits.backend, LedgerSpend(self.usage),
                                           inflight_ttl_s=limits.inflight_ttl_s)
        self.admission = Admission(self.limit_backend, self.prices, reserve_ceiling_usd=limits.reserve_ceiling_usd,
                                   default_max_output_tokens=limits.default_max_output_tokens,
                                   fail_open=limits.fail_open)
        self.pipeline = Pipeline(keys=self.keys, catalog=self.catalog, upstream=self.upstream, ledger=self.ledger,
                                 max_body_bytes=settings.max_body_bytes, max_attempts=settings.max_attempts,
                                 images=self.images, access_log=self.access_log, policy=self.policy,
                                 fallbacks=settings.routing.fallbacks, prices=self.prices,
                                 admission=self.admission, usage=self.usage)
        self.router = PathRouter()
        self.router.add("GET", "/health", self.health)
        self.metrics = Metrics(self.ledger, self.health_board, [p.name for p in self.providers], self.admission,
                               self.shared_cooldowns)
        self.router.add("GET", "/metrics", self.serve_metrics)
        anthropic_routes = AnthropicRoutes(self.pipeline, self.catalog)
        gemini_routes = GeminiRoutes(self.pipeline, self.catalog)
        openai_routes = OpenAIRoutes(self.pipeline, self.catalog, anthropic_models=anthropic_routes.list_models,
                                     gemini_models=gemini_routes.list_models)
        openai_routes.mount(self.router)
        anthropic_routes.mount(self.router)
        gemini_routes.mount(self.router)
        video = settings.video_tasks
        self.video_tasks = VideoTasks(VideoTaskRepository(self.engine), self.providers, self.upstream, self.prices,
                                      self.limit_backend, poll_interval_s=video.poll_interval_s,
                                      lease_s=video.lease_s, batch=video.batch)
        ark_routes = ArkRoutes(self.pipeline, self.video_tasks)
        ark_routes.mount(self.router)
        search = settings.search
        self.search_cache = build_cache(search.cache_ttl_s, search.cache_backend, search.cache_max_entries)
        search_routes = SearchRoutes(SearchService(self.pipeline, self.catalog, self.prices, self.search_cache))
        search_routes.mount(self.router)
        self._pipeline_handlers = {openai_routes.chat_completions, openai_routes.embeddings,
                                   anthropic_routes.messages, anthropic_routes.count_tokens, gemini_routes.dispatch,
                                   ark_routes.create, search_routes.search}
        AdminRoutes(self.keys, settings.master_key, self.catalog, self.policy,
                    UsageReport(self.engine)).mount(self.router)
        self._demo_upstream = _demo_upstream() if settings.demo else None
        self.ready = False

    async def serve_metrics(self, request: Request, send: Send) -> None:
        await send_bytes(send, 200, self.metrics.render(), [(b"content-type", METRICS_CONTENT_TYPE)])

    async def startup(self) -> None:
        await migrate(self.engine)
        try:  # before the first request: the in-process limits read spend from the ledger
            await self.ledger.replay()
        except Exception as exc:
            log.error("usage ledger: rows of an earlier run could not be written yet (retried): %s", exc)
        # Everything built so far lives as long as the process: freezing it keeps full collections from
        # re-scanning it, and a higher gen-0 threshold makes collections rarer (measured: GC took ~10% of the
        # CPU at concurrency 50, in 74-103 ms pauses that collected nothing).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        self.ledger.start()
        if self.access_log is not None:
            self.access_log.start()
        if any(p.supports(VIDEO_TASKS) for p in self.providers):
            self.video_tasks.start()
        if self.shared_cooldowns is not None:
            self.shared_cooldowns.start(self.health_board)
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        await self.video_tasks.close()
        await self.ledger.close()
        if self.access_log is not None:
            await self.access_log.close()
        await self.upstream.close()
        await self.pipeline.drain()  # settlements still on their way to the limits backend
        await self.limit_backend.close()
        if self.shared_cooldowns is not None:
            await self.shared_cooldowns.close()
        if self.search_cache is not None:
            await self.search_cache.close()
        await self.images.close()
        await self.engine.dispose()

    async def health(self, request: Request, send: Send) -> None:
        status = 200 if self.ready else 503
        await send_json(send, status, {"status": "ok" if self.ready else "starting",
                                       "providers": len(self.providers), "models": len(self.catalog.models())})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._demo_upstream is not None and scope["path"].startswith(DEMO_PREFIX):
                scope = {**scope, "path": scope["path"][len(DEMO_PREFIX):] or "/"}
                await self._demo_upstream(scope, receive, send)
                return
            request = Request(scope, receive)
            handler, params, path_known = self.router.resolve(request.method, request.path)
            if handler is not None and handler in self._pipeline_handlers:
                request.path_params = params
                await handler(request, send)  # the pipeline sets x-request-id itself (and records it)
                return
            send = _with_request_id(send)
            if handler is not None:
                request.path_params = params
                await handler(request, send)
                return
            await _not_found(send, request, path_known)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.error("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _with_request_id(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if not any(name == b"x-request-id" for name, _ in headers):
                headers.append((b"x-request-id", new_request_id().encode()))
            message = {**message, "headers": headers}
        await send(message)
    return sending


async def _not_found(send: Send, request: Request, path_known: bool) -> None:
    if path_known:
        error = GatewayError(405, ErrorKind.INVALID_REQUEST, f"Method {request.method} is not allowed on "
                             f"{request.path}.", code="method_not_allowed")
    else:
        error = GatewayError(404, ErrorKind.NOT_FOUND, f"Unknown path {request.method} {request.path}.",
                             code="not_found")
    await send_bytes(send, error.status, openai_codec.error_body(error), [(b"content-type", b"application/json")])


def _demo_upstream() -> ASGIApp:
    from yourouter.simulators.combined import create_app as create_simulator
    from yourouter.simulators.openai import SimulatorSettings

    return create_simulator(SimulatorSettings(api_key="sk-simulator"))


def create_app(settings: Settings | None = None) -> Gateway:
    return Gateway(settings if settings is not None else load_settings())


def app_from_environment() -> Gateway:
    """Factory for `uvicorn --factory` and multi-worker serving: the config path comes from $YOUROUTER_CONFIG."""
    inline = os.environ.get(SETTINGS_ENV)
    if inline:
        return Gateway(Settings.model_validate_json(inline))
    return Gateway(load_settings(os.environ.get("YOUROUTER_CONFIG")))
