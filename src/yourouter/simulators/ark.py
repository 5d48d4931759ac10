"""A protocol-faithful Ark (BytePlus ModelArk / Volcengine Ark) video-generation task simulator, as a raw ASGI app.

Serves, under the base URL `<sim>/api/v3`:

- `POST /api/v3/contents/generations/tasks`: Ark's create body, validated as Ark does (`_ark_validation`), answered
  `{"id": "cgt-<YYYYMMDDHHMMSS>-<5 [a-z0-9]>"}`;
- `GET /api/v3/contents/generations/tasks/{id}`: the task object (`_ark_tasks.Task.render_status`);
- `GET /api/v3/contents/generations/tasks?page_num=&page_size=&filter.status=&filter.model=&filter.task_ids=...`:
  `{"total", "items"}`, newest first;
- `DELETE /api/v3/contents/generations/tasks/{id}`: a queued task is cancelled, a succeeded/failed/expired one is
  deleted (404 afterwards), a running or cancelled one is refused (400 InvalidParameter); answers `{}`;
- `GET /health`.

Every API response carries `x-request-id` (and echoes the SDK's `x-client-request-id`). Errors are Ark's envelope
`{"error": {"code", "message", "param", "type"}}`: 400 BadRequest MissingParameter/InvalidParameter, 401
Unauthorized AuthenticationError (when `SimulatorSettings.api_key` is set, the key must come as
`Authorization: Bearer <key>`), 404 NotFound `NotFound.TaskId` for unknown task ids and
`InvalidEndpointOrModel.NotFound` for models outside `ArkSettings.models`, 429 TooManyRequests
`RateLimitExceeded.EndpointRPMExceeded`, 500 InternalServerError `InternalServiceError`.

Tasks live in memory. Their status follows wall-clock time since creation: `queued` for `ArkSettings.queue_s`
(default 0.2 s), `running` for `run_s` (0.5 s), then `succeeded` — or `failed` (`task_fail_rate`, or a directive),
or `expired` when `execution_expires_after` (or `[sim:expire_s=...]`) runs out first. Directives in the text
prompt: `[sim:queue_s=0.1]`, `[sim:run_s=2]`, `[sim:fail]` / `[sim:fail=SomeErrorCode]`, `[sim:expire_s=0.3]`,
and the other simulators' request directives for the create call: `[sim:status=429]`, `[sim:retry_after=2]`,
`[sim:delay_ms=300]`, `[sim:disconnect]`, `[sim:midstream_disconnect=1]` (half the `{"id"}` body: the task
exists but the client never learns its id), `[sim:midstream_error=1]` (a 500 after the task was created).

With `callback_url`, every status change is POSTed (the task object, as GET shows it at that change) to the URL in
the background, with `callback_timeout_s`; terminal statuses are tried up to `callback_attempts` times until a 2xx.
Deliveries are recorded: `GET`/`DELETE /_sim/callbacks`.

Faults, settings and control endpoints are the OpenAI simulator's: `fail_rate`/`fail_status` and the
`POST /_sim/faults` queue apply to create; a fault posted with `"operation": "get" | "list" | "delete"` applies to
the next calls of that operation instead (`GET /_sim/faults` lists both, with their operation; behind the combined
simulator post them to `/_sim/ark/faults`, as the root fans out to every simulator). `GET /_sim/requests` is the
request log; `GET /_sim/tasks` lists every task object as of now.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import asdict
from typing import Any

import aiohttp
import orjson

from ._ark_tasks import TERMINAL, ArkSettings, Task, TaskStore, new_task_id, plan_task
from ._ark_validation import ArkError, invalid, parse_list_query, validate_create
from ._asgi import Headers, Send, send_json, serve
from ._base import (
    Exchange,
    Fault,
    Request,
    SimulatorApp,
    SimulatorSettings,
    error_envelope,
    header_value,
    parse_json,
    serve_control,
)
from ._openai_chat import parse_directives
from ._openai_validation import RequestError

__all__ = ["TASKS_PATH", "ArkSettings", "ArkSimulator", "create_app", "run"]

TASKS_PATH = "/api/v3/contents/generations/tasks"
OPERATIONS = ("create", "get", "list", "delete")
# injected error status -> (code, message)
FAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("InvalidParameter", "One or more parameters specified in the request are not valid."),
    401: ("AuthenticationError", "The API key or AK/SK in the request is missing or invalid."),
    403: ("AccessDenied", "The request failed because you do not have access to the requested resource."),
    404: ("InvalidEndpointOrModel.NotFound", "The model or endpoint does not exist or you do not have access to it."),
    429: ("RateLimitExceeded.EndpointRPMExceeded",
          "The Requests Per Minute (RPM) limit of the associated endpoint for your account has been exceeded."),
    500: ("InternalServiceError", "The service encountered an unexpected internal error."),
}


class OperationFaults:
    """Faults queued for the read and delete operations (create uses the shared `SimulatorState` queue)."""

    def __init__(self) -> None:
        self._faults: deque[list[Any]] = deque()  # [operation, fault, remaining uses]

    def queue(self, operation: str, fault: Fault, count: int) -> None:
        self._faults.append([operation, fault, count])

    def take(self, operation: str) -> Fault | None:
        for entry in self._faults:
            if entry[0] == operation:
                entry[2] -= 1
                if entry[2] <= 0:
                    self._faults.remove(entry)
                fault: Fault = entry[1]
                return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        return [{**asdict(fault), "remaining": left, "operation": op} for op, fault, left in self._faults]

    def clear(self) -> None:
        self._faults.clear()


class ArkSimulator(SimulatorApp[ArkError]):
    """The ASGI application. `state` (create faults, request log, ids), `tasks` and `callbacks` are exposed."""

    errors = (ArkError,)

    def __init__(self, settings: SimulatorSettings, ark: ArkSettings | None = None) -> None:
        super().__init__(settings)
        self.ark = ark or ArkSettings()
        self.faults = OperationFaults()
        self.tasks = TaskStore()
        self.callbacks: list[dict[str, Any]] = []
        self.clock = time.time
        self._wakeups: dict[str, asyncio.Event] = {}
        self._jobs: set[asyncio.Task[None]] = set()

    def shutdown(self) -> None:
        for job in list(self._jobs):
            job.cancel()

    def response_headers(self, request: Request) -> Headers:
        request_id = "02" + str(int(self.clock() * 1000)) + "".join(
            self.state.rng.choice("0123456789abcdef") for _ in range(32))
        headers: Headers = [(b"x-request-id", request_id.encode())]
        if "x-client-request-id" in request.headers:
            headers.append((b"x-client-request-id", request.headers["x-client-request-id"].encode("latin-1")))
        return headers

    async def send_error(self, error: ArkError, ex: Exchange) -> None:
        await send_json(ex.send, error.status, error.envelope(header_value(ex.headers, b"x-request-id")), ex.headers)

    async def handle(self, ex: Exchange) -> None:
        method, path = ex.request.method, ex.request.path
        if path == "/health":
            await send_json(ex.send, 200, {"status": "ok"}, ex.headers)
            return
        rest = path[len(TASKS_PATH):] if path.startswith(TASKS_PATH) else None
        if rest in ("", "/"):
            operation = {"POST": "create", "GET": "list"}.get(method)
        elif rest is not None and rest.startswith("/") and "/" not in rest[1:]:
            operation = {"GET": "get", "DELETE": "delete"}.get(method)
        else:
            raise ArkError(404, "NotFound", f"The requested path {path} is not found.")
        if operation is None:
            raise ArkError(405, "MethodNotAllowed", f"The method {method} is not allowed for {path}.")
        self._authenticate(ex.request.headers)
        if operation == "create":
            faults = self.queued_faults()
        else:
            fault = self.faults.take(operation)
            faults = [] if fault is None else [fault]
        if not await self.apply_faults(ex, faults):
            return
        if operation == "create":
            await self._create(ex)
            return
        if not await ex.watch.pause(self.settings.latency_ms / 1000):
            return
        now = self.clock()
        if operation == "list":
            total, page = self.tasks.page(parse_list_query(ex.request.query_string), now)
            payload: dict[str, Any] = {"total": total, "items": [task.render(now) for task in page]}
        else:
            task = self._task(rest[1:] if rest else "", now)
            payload = task.render(now) if operation == "get" else self._delete(task, now)
        await self.send_body(payload, ex)

    def _authenticate(self, request_headers: dict[str, str]) -> None:
        key = self.settings.api_key
        if key is not None and request_headers.get("authorization", "") != f"Bearer {key}":
            raise ArkError(401, "AuthenticationError", FAULT_ERRORS[401][1])

    def _task(self, task_id: str, now: float) -> Task:
        task = self.tasks.get(task_id, now)
        if task is None:
            raise ArkError(404, "NotFound.TaskId", f"The specified task {task_id} is not found.", "task_id")
        return task

    async def _create(self, ex: Exchange) -> None:
        body, ok = parse_json(ex.request.body)
        if not ok or not isinstance(body, dict):
            raise ArkError(400, "InvalidParameter", "The request body is not a valid JSON object.")
        spec = validate_create(body)
        if self.ark.models is not None and spec.model not in self.ark.models:
            raise ArkError(404, "InvalidEndpointOrModel.NotFound", f"The model or endpoint {spec.model} does not "
                                                                   "exist or you do not have access to it.", "model")
        if spec.draft_task_id is not None:
            draft = self.tasks.get(spec.draft_task_id, self.clock())
            if draft is None or not draft.spec.extra.get("draft") or draft.status_at(self.clock())[0] != "succeeded":
                raise invalid("content", f"the draft task {spec.draft_task_id} is not a succeeded draft task")
        if not await self.settle(ex, parse_directives(spec.prompt)):
            return
        now = self.clock()
        task_id = new_task_id(self.state.rng, now)
        while task_id in self.tasks:
            task_id = new_task_id(self.state.rng, now)
        task = plan_task(task_id, spec, self.ark, self.state.rng, now)
        self.tasks.add(task)
        if spec.callback_url is not None:
            self._schedule_callbacks(task)
        payload = {"id": task.id}
        if "safety_identifier" in spec.extra:
            payload["safety_identifier"] = spec.extra["safety_identifier"]
        await self.send_body(payload, ex)

    def _delete(self, task: Task, now: float) -> dict[str, Any]:
        status = task.status_at(now)[0]
        if status in ("running", "cancelled"):
            raise invalid("task_id", f"the task {task.id} is {status} and cannot be cancelled or deleted")
        if status == "queued":
            task.cancelled_at = now
            if task.id in self._wakeups:
                self._wakeups[task.id].set()
        else:
            self.tasks.remove(task.id)
        return {}

    async def send_fault(self, fault: Fault, ex: Exchange, headers: Headers) -> None:
        code, message = FAULT_ERRORS.get(fault.status, (
            "InternalServiceError" if fault.status >= 500 else "InvalidParameter", f"Simulated error {fault.status}."))
        extra = list(headers)
        if fault.retry_after is not None:
            extra.append((b"retry-after", f"{fault.retry_after:g}".encode()))
        request_id = header_value(headers, b"x-request-id")
        await send_json(ex.send, fault.status, ArkError(fault.status, code, message).envelope(request_id), extra)

    # Callbacks ---------------------------------------------------------------------------------------------------

    def _schedule_callbacks(self, task: Task) -> None:
        self._wakeups[task.id] = asyncio.Event()
        job = asyncio.create_task(self._run_callbacks(task, self._wakeups[task.id]))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _run_callbacks(self, task: Task, wake: asyncio.Event) -> None:
        """POST each status change as it happens; a cancellation wakes the loop early."""
        sent = 0
        try:
            while True:
                wake.clear()
                steps = task.transitions()
                if sent >= len(steps):
                    return
                status, at = steps[sent]
                delay = at - self.clock()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), delay)
                    continue
                await self._deliver(task, status, at)
                sent += 1
                if status in TERMINAL:
                    return
        finally:
            self._wakeups.pop(task.id, None)

    async def _deliver(self, task: Task, status: str, at: float) -> None:
        assert task.spec.callback_url is not None
        url = task.spec.callback_url
        body = task.render_status(status, at)
        attempts = self.ark.callback_attempts if status in TERMINAL else 1
        timeout = aiohttp.ClientTimeout(total=self.ark.callback_timeout_s)
        for attempt in range(1, attempts + 1):
            record: dict[str, Any] = {"task_id": task.id, "status": status, "url": url, "attempt": attempt,
                                      "http_status": None, "error": None, "sent_at": self.clock(), "body": body}
            try:
                async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                        url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as response:
                    record["http_status"] = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            self.callbacks.append(record)
            if record["http_status"] is not None and 200 <= record["http_status"] < 300:
                return
            if attempt < attempts:
                await asyncio.sleep(self.ark.callback_retry_delay_s)

    # Control endpoints -------------------------------------------------------------------------------------------

    async def control(self, method: str, path: str, raw: bytes, send: Send) -> None:
        if path == "/_sim/callbacks" and method in ("GET", "DELETE"):
            if method == "DELETE":
                self.callbacks.clear()
            await send_json(send, 200, self.callbacks if method == "GET" else {"cleared": True})
        elif (method, path) == ("GET", "/_sim/tasks"):
            now = self.clock()
            await send_json(send, 200, [task.render(now) for task in self.tasks.all()])
        elif path == "/_sim/faults" and method == "GET":
            create = [{**fault, "operation": "create"} for fault in self.state.pending_faults()]
            await send_json(send, 200, create + self.faults.pending())
        elif path == "/_sim/faults" and method == "DELETE":
            self.faults.clear()
            await serve_control(self.state, method, path, raw, send)
        elif path == "/_sim/faults" and method == "POST":
            await self._queue_fault(raw, send)
        else:
            await serve_control(self.state, method, path, raw, send)

    async def _queue_fault(self, raw: bytes, send: Send) -> None:
        payload, _ = parse_json(raw)
        operation = payload.get("operation", "create") if isinstance(payload, dict) else "create"
        if operation == "create":
            await serve_control(self.state, "POST", "/_sim/faults", raw, send)
            return
        try:
            if operation not in OPERATIONS:
                raise RequestError(f"'operation' must be one of {', '.join(OPERATIONS)}.", param="operation",
                                   code="invalid_value")
            fault, count = Fault.from_json(payload)
        except RequestError as error:
            envelope = error_envelope(error.message, error_type="invalid_request_error", param=error.param,
                                      code=error.code)
            await send_json(send, error.status, envelope)
            return
        self.faults.queue(operation, fault, count)
        await send_json(send, 200, {"queued": count, "fault": asdict(fault), "operation": operation})


def create_app(settings: SimulatorSettings, ark: ArkSettings | None = None) -> ArkSimulator:
    """Build the simulator ASGI app (an `async (scope, receive, send)` callable that also handles lifespan)."""
    return ArkSimulator(settings, ark)


def run(settings: SimulatorSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    serve(create_app(settings), host, port)
