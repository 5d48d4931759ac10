"""The admin API under `/admin`, guarded by the master key: key management, routes and usage reports."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel, Field, ValidationError

from yourouter.asgi import PathRouter, Request, Send, send_bytes, send_json
from yourouter.auth.credentials import bearer_token, is_master_key
from yourouter.auth.keys import KeyStore
from yourouter.codecs import openai as codec
from yourouter.codecs.common import parse_object
from yourouter.config.schema import KeyAttributes
from yourouter.ir.errors import ErrorKind, GatewayError, bad_request
from yourouter.routing.catalog import Catalog
from yourouter.routing.policy import RoutingPolicy
from yourouter.storage.reports import UsageQuery, UsageQueryError, UsageReport
from yourouter.storage.repositories import StoredKey

_ADMIN_BODY_LIMIT = 64 * 1024
_Body = TypeVar("_Body", bound=BaseModel)


class KeyCreate(KeyAttributes):
    name: str = Field(min_length=1, max_length=200)


class KeyUpdate(KeyAttributes):
    """Only the fields a request sends are changed."""

    name: str | None = Field(default=None, min_length=1, max_length=200)


def key_view(record: StoredKey) -> dict[str, Any]:
    """A key as the admin API and CLI show it: never the key or its hash."""
    return {"id": record.id, "name": record.name, "key_prefix": record.key_prefix, "models": list(record.models),
            "vendors": list(record.vendors), "rpm": record.rpm, "tpm": record.tpm,
            "max_concurrency": record.max_concurrency,
            "budget_usd": float(record.budget_usd) if record.budget_usd is not None else None,
            "budget_period": record.budget_period,
            "expires_at": record.expires_at.isoformat() if record.expires_at else None,
            "disabled": record.disabled, "metadata": record.metadata,
            "created_at": record.created_at.isoformat(),
            "updated_at": record.updated_at.isoformat() if record.updated_at else None,
            "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
            "status": "revoked" if record.revoked_at else "disabled" if record.disabled else "active"}


def _validated(model: type[_Body], payload: dict[str, Any]) -> _Body:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise bad_request(f"{where}: {first['msg']}", param=where) from None


def routes_view(catalog: Catalog, policy: RoutingPolicy | None) -> dict[str, Any]:
    """The catalog with each deployment's live health (when the gateway is running)."""
    now = policy.health.now() if policy else 0.0
    models = []
    for model, routes in catalog.routes():
        deployments = []
        for route in routes:
            config = route.provider.config
            entry: dict[str, Any] = {"name": config.name, "vendor": config.vendor, "type": config.type,
                                     "upstream": route.upstream_model, "priority": config.priority,
                                     "weight": config.weight}
            if policy is not None:
                health = policy.health.of(config.name)
                entry.update(state=health.state(now), in_flight=health.in_flight,
                             ttfb_ewma_ms=None if health.ttfb_ewma_ms is None else round(health.ttfb_ewma_ms, 2),
                             cooldown_remaining_s=round(max(0.0, health.cooldown_until - now), 2),
                             busy=policy.busy(route, now))
            deployments.append(entry)
        models.append({"model": model, "deployments": deployments})
    return {"strategy": policy.strategy if policy else None, "models": models}


class AdminRoutes:
    def __init__(self, keys: KeyStore, master_key: str | None, catalog: Catalog | None = None,
                 policy: RoutingPolicy | None = None, usage: UsageReport | None = None) -> None:
        self._keys = keys
        self._master_key = master_key
        self._catalog = catalog
        self._policy = policy
        self._usage = usage

    def mount(self, router: PathRouter) -> None:
        router.add("GET", "/admin/keys", self._guarded(self.list_keys))
        router.add("POST", "/admin/keys", self._guarded(self.create_key))
        router.add("GET", "/admin/keys/{key_id}", self._guarded(self.get_key))
        router.add("PATCH", "/admin/keys/{key_id}", self._guarded(self.update_key))
        router.add("POST", "/admin/keys/{key_id}/rotate", self._guarded(self.rotate_key))
        router.add("DELETE", "/admin/keys/{key_id}", self._guarded(self.revoke_key))
        router.add("GET", "/admin/routes", self._guarded(self.list_routes))
        if self._usage is not None:
            router.add("GET", "/admin/usage", self._guarded(self.usage_report))

    def _guarded(self, handler: Any) -> Any:
        async def guarded(request: Request, send: Send) -> None:
            try:
                if self._master_key is None:
                    raise GatewayError(401, ErrorKind.AUTHENTICATION,
                                       "The admin API is disabled: no master_key is configured.",
                                       code="admin_disabled")
                if not is_master_key(bearer_token(request), self._master_key):
                    raise GatewayError(401, ErrorKind.AUTHENTICATION, "The admin API needs the master key.",
                                       code="invalid_api_key")
                await handler(request, send)
            except GatewayError as error:
                await send_bytes(send, error.status, codec.error_body(error), [(b"content-type", b"application/json")])
        return guarded

    async def list_routes(self, request: Request, send: Send) -> None:
        assert self._catalog is not None
        await send_json(send, 200, routes_view(self._catalog, self._policy))

    async def usage_report(self, request: Request, send: Send) -> None:
        assert self._usage is not None
        params: dict[str, str] = {}
        # blanks kept: `?key=` is an error, not a silent "every key"
        for name, value in parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            if name in params:
                raise bad_request(f"{name} is given more than once.", param=name)
            params[name] = value
        try:
            query = UsageQuery.parse(params)
        except UsageQueryError as exc:
            raise bad_request(str(exc), param=exc.param) from None
        await send_json(send, 200, (await self._usage.summarize(query)).as_dict())

    async def list_keys(self, request: Request, send: Send) -> None:
        records = await self._keys.all()
        await send_json(send, 200, {"object": "list", "data": [key_view(r) for r in records]})

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            return parse_object(await request.body(_ADMIN_BODY_LIMIT))
        except GatewayError:
            raise
        except Exception:
            raise bad_request("The request body is too large.") from None

    async def create_key(self, request: Request, send: Send) -> None:
        body = _validated(KeyCreate, await self._body(request))
        attributes = KeyAttributes.model_validate(body.model_dump(exclude={"name"}))
        created = await self._keys.create(body.name.strip(), attributes)
        await send_bytes(send, 201, orjson.dumps({**key_view(created.record), "key": created.key}),
                         [(b"content-type", b"application/json")])

    async def update_key(self, request: Request, send: Send) -> None:
        body = _validated(KeyUpdate, await self._body(request))
        changes = body.model_dump(include=body.model_fields_set - {"name"})
        record = await self._keys.update(request.path_params["key_id"], changes, name=body.name)
        if record is None:
            raise GatewayError(404, ErrorKind.NOT_FOUND, "No active key with that id.", code="key_not_found")
        await send_json(send, 200, key_view(record))

    async def rotate_key(self, request: Request, send: Send) -> None:
        rotated = await self._keys.rotate(request.path_params["key_id"])
        if rotated is None:
            raise GatewayError(404, ErrorKind.NOT_FOUND, "No active key with that id.", code="key_not_found")
        await send_bytes(send, 200, orjson.dumps({**key_view(rotated.record), "key": rotated.key}),
                         [(b"content-type", b"application/json")])

    async def get_key(self, request: Request, send: Send) -> None:
        record = await self._keys.get(request.path_params["key_id"])
        if record is None:
            raise GatewayError(404, ErrorKind.NOT_FOUND, "No key with that id.", code="key_not_found")
        await send_json(send, 200, key_view(record))

    async def revoke_key(self, request: Request, send: Send) -> None:
        record = await self._keys.revoke(request.path_params["key_id"])
        if record is None:
            raise GatewayError(404, ErrorKind.NOT_FOUND, "No key with that id.", code="key_not_found")
        await send_json(send, 200, key_view(record))
