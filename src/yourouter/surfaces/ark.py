"""The Ark (BytePlus ModelArk / Volcengine Ark) video task API under `/api/v3/contents/generations/tasks`.

Auth by `Authorization: Bearer <key>` or `x-api-key`. Errors in Ark's envelope, `{"error": {"code", "message",
"param", "type"}}` (OpenAI's shape with Ark's type and code names). Creating a task runs through the pipeline (the
body passes to the deployment untouched but for the model name); reading, listing and deleting go to the task
service (`tasks/video.py`).
"""

from __future__ import annotations

from typing import Any

import orjson

from yourouter.asgi import PathRouter, Request, Send, send_bytes
from yourouter.auth.credentials import bearer_token, first_of, header_token
from yourouter.codecs import StreamEncoder
from yourouter.codecs.common import parse_object
from yourouter.ir.chat import ChatRequest
from yourouter.ir.errors import GatewayError, bad_request
from yourouter.pipeline.core import Call, Pipeline
from yourouter.providers.base import VIDEO_TASKS
from yourouter.tasks.video import VideoTasks, estimate_video_tokens, validated_page

BASE = "/api/v3/contents/generations/tasks"
_TYPES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 413: "BadRequest",
          429: "TooManyRequests"}
_CODES = {"missing_api_key": "AuthenticationError", "invalid_api_key": "AuthenticationError",
          "key_disabled": "AuthenticationError", "key_expired": "AuthenticationError",
          "model_not_allowed": "AccessDenied", "vendor_not_allowed": "AccessDenied",
          "model_not_found": "InvalidEndpointOrModel.NotFound", "unknown_vendor": "InvalidParameter",
          "vendor_mismatch": "InvalidParameter", "rate_limit_exceeded": "RateLimitExceeded",
          "insufficient_quota": "QuotaExceeded", "request_too_large": "InvalidParameter",
          "unsupported_content_type": "InvalidParameter"}
_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")


class ArkSurface:
    """The pipeline's view of the Ark family: its bodies pass to Ark deployments (which speak OpenAI's dialect for
    chat) untouched, so it declares that dialect; it has no streams."""

    dialect = "openai"

    def __init__(self) -> None:
        self._credentials = first_of(bearer_token, header_token(b"x-api-key"))

    def credentials(self, request: Request) -> str | None:
        return self._credentials(request)

    def error_body(self, error: GatewayError) -> bytes:
        status_type = _TYPES.get(error.status, "InternalServerError" if error.status >= 500 else "BadRequest")
        code = _CODES.get(error.code or "") or error.code or ("InternalServiceError" if error.status >= 500
                                                              else "InvalidParameter")
        if error.status >= 500 and code in ("gateway_error", "upstream_error", "upstream_unreachable",
                                           "upstream_timeout"):
            code = "InternalServiceError"
        return orjson.dumps({"error": {"code": code, "message": error.message, "param": error.param or "",
                                       "type": status_type}})

    def stream_error_event(self, error: GatewayError) -> bytes:
        return self.error_body(error)

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder:
        raise bad_request("Video tasks do not stream.")


SURFACE = ArkSurface()


class ArkRoutes:
    def __init__(self, pipeline: Pipeline, tasks: VideoTasks) -> None:
        self._pipeline = pipeline
        self._tasks = tasks

    def mount(self, router: PathRouter) -> None:
        router.add("POST", BASE, self.create)
        router.add("GET", BASE, self.list)
        router.add("GET", BASE + "/{task_id}", self.get)
        router.add("DELETE", BASE + "/{task_id}", self.delete)

    def _parse(self, body: bytes, request: Request) -> Call:
        payload = parse_object(body)
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("The parameter `model` specified in the request is missing.", param="model",
                              code="MissingParameter")
        content = payload.get("content")
        if not isinstance(content, list) or not content:
            raise bad_request("The parameter `content` specified in the request is missing or empty.",
                              param="content", code="MissingParameter")
        return Call(endpoint="video.tasks.create", operation=VIDEO_TASKS, model=model, body=body,
                    max_output=estimate_video_tokens(payload), accepted=self._tasks.store_created)

    async def create(self, request: Request, send: Send) -> None:
        await self._pipeline.handle(request, send, SURFACE, "video.tasks.create", self._parse)

    async def _answer(self, request: Request, send: Send, work: Any) -> None:
        headers: list[tuple[bytes, bytes]] = []  # the app adds x-request-id to these answers
        try:
            key = await self._pipeline.authenticate(request, SURFACE)
            status, body = await work(key)
            await send_bytes(send, status, body, [*headers, (b"content-type", b"application/json")])
        except GatewayError as error:
            await send_bytes(send, error.status, SURFACE.error_body(error),
                             [*headers, (b"content-type", b"application/json")])

    async def get(self, request: Request, send: Send) -> None:
        async def work(key: Any) -> tuple[int, bytes]:
            return 200, orjson.dumps(await self._tasks.get(key, request.path_params["task_id"]))
        await self._answer(request, send, work)

    async def delete(self, request: Request, send: Send) -> None:
        async def work(key: Any) -> tuple[int, bytes]:
            return await self._tasks.delete(key, request.path_params["task_id"])
        await self._answer(request, send, work)

    async def list(self, request: Request, send: Send) -> None:
        async def work(key: Any) -> tuple[int, bytes]:
            query = request.query_lists
            page_num, page_size = validated_page(query)
            statuses = query.get("filter.status") or []
            status = statuses[-1] if statuses else None
            if status is not None and status not in _STATUSES:
                raise bad_request(f"filter.status must be one of {', '.join(_STATUSES)}.", param="filter.status",
                                  code="InvalidParameter")
            page = await self._tasks.list(key, page_num=page_num, page_size=page_size, status=status,
                                          models=query.get("filter.model") or [],
                                          task_ids=query.get("filter.task_ids") or [])
            return 200, orjson.dumps({"total": page.total, "items": page.items})
        await self._answer(request, send, work)
