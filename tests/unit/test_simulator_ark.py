"""The Ark video-task simulator over a real socket, driven by the official `volcengine-ark-runtime` SDK and raw HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("volcenginesdkarkruntime")

from volcenginesdkarkruntime import Ark  # noqa: E402
from volcenginesdkarkruntime._exceptions import (  # noqa: E402
    ArkAuthenticationError,
    ArkBadRequestError,
    ArkInternalServerError,
    ArkNotFoundError,
    ArkRateLimitError,
)

from yourouter.simulators._ark_tasks import dimensions, video_tokens  # noqa: E402
from yourouter.simulators._ark_validation import parse_commands  # noqa: E402
from yourouter.simulators.ark import ArkSettings, create_app  # noqa: E402
from yourouter.simulators.background import serve_in_thread  # noqa: E402
from yourouter.simulators.combined import create_app as create_combined  # noqa: E402
from yourouter.simulators.openai import SimulatorSettings  # noqa: E402

KEY = "ark-sim-key"
MODEL = "doubao-seedance-1-0-lite-t2v-250428"
FAST = ArkSettings(queue_s=0.05, run_s=0.1, callback_retry_delay_s=0.05, callback_timeout_s=1.0)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
IMAGE = "https://example.com/cat.png"


def text(prompt: str) -> dict[str, Any]:
    return {"type": "text", "text": prompt}


def image(url: str = IMAGE, role: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    if role is not None:
        item["role"] = role
    return item


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Server:
    url: str

    def request(self, method: str, path: str, body: object = None, key: str | None = KEY) -> Response:
        data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Response(response.status, {k.lower(): v for k, v in response.headers.items()},
                                json.loads(response.read() or b"null"))
        except urllib.error.HTTPError as error:
            return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, json.loads(error.read()))

    def create(self, body: dict[str, Any]) -> Response:
        return self.request("POST", "/api/v3/contents/generations/tasks", body)

    def client(self, max_retries: int = 0, key: str = KEY) -> Ark:
        return Ark(base_url=self.url + "/api/v3", api_key=key, max_retries=max_retries)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve_in_thread(create_app(SimulatorSettings(api_key=KEY), FAST)) as url:
        yield Server(url)


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        server: Server = request.getfixturevalue("server")
        for path in ("/_sim/faults", "/_sim/requests", "/_sim/callbacks"):
            server.request("DELETE", path)


@pytest.fixture
def client(server: Server) -> Ark:
    return server.client()


def wait_for(client: Ark, task_id: str, statuses: tuple[str, ...], timeout: float = 5.0) -> Any:
    """Poll until the task reaches one of `statuses`; return it."""
    deadline = time.monotonic() + timeout
    while True:
        task = client.content_generation.tasks.get(task_id=task_id)
        if task.status in statuses or time.monotonic() > deadline:
            assert task.status in statuses, task
            return task
        time.sleep(0.01)


# Pure parts ----------------------------------------------------------------------------------------------------

def test_usage_formula_matches_arks_example() -> None:
    assert dimensions("720p", "16:9") == (1280, 720)
    assert dimensions("1080p", "9:16") == (1080, 1920)
    assert dimensions("480p", "1:1") == (480, 480)
    assert video_tokens("720p", "16:9", 5 * 24 + 1) == 108900


def test_text_commands_long_and_short_names() -> None:
    prompt, values = parse_commands("a cat --rt 9:16 --dur 8 --fps 16 --wm true --seed 7 --cf false --rs 480p --x y")
    assert prompt == "a cat --x y"
    assert values == {"ratio": "9:16", "duration": 8, "framespersecond": 16, "watermark": True, "seed": 7,
                      "camera_fixed": False, "resolution": "480p"}


# Create, get, progression --------------------------------------------------------------------------------------

def test_text_to_video_progresses_to_success(server: Server, client: Ark) -> None:
    created = client.content_generation.tasks.create(
        model=MODEL, content=[text("a cat on a skateboard --ratio 16:9 --duration 5 [sim:queue_s=0.15] "
                                   "[sim:run_s=0.15]")])
    assert created.id.startswith("cgt-") and len(created.id) == len("cgt-20250906194036-2k4r4")
    seen: list[str] = []
    deadline = time.monotonic() + 5
    while not seen or seen[-1] != "succeeded":
        assert time.monotonic() < deadline
        task = client.content_generation.tasks.get(task_id=created.id)
        if not seen or seen[-1] != task.status:
            seen.append(task.status)
            if task.status != "succeeded":
                assert task.content is None and task.usage is None and task.error is None
        time.sleep(0.01)
    assert seen == ["queued", "running", "succeeded"]
    assert task.model == MODEL and task.resolution == "720p" and task.ratio == "16:9"
    assert task.duration == 5 and task.framespersecond == 24 and task.frames is None
    assert task.content.video_url.startswith("https://") and ".mp4?" in task.content.video_url
    assert "X-Tos-Expires=86400" in task.content.video_url and task.content.last_frame_url is None
    assert task.usage.completion_tokens == task.usage.total_tokens == 108900
    assert task.created_at <= task.updated_at <= time.time() + 1
    assert task.service_tier == "default" and task.execution_expires_after == 172800
    assert 0 <= task.seed < 2**32


def test_wire_shape_headers_and_sdk_nulls(server: Server, client: Ark) -> None:
    raw = client.content_generation.tasks.with_raw_response.create(model=MODEL, content=[text("a dog")])
    assert raw.headers["x-request-id"].startswith("02")
    assert raw.headers["x-client-request-id"] == raw.http_request.headers["x-client-request-id"]
    assert list(json.loads(raw.http_response.content)) == ["id"]
    logged = server.request("GET", "/_sim/requests").body[-1]
    assert logged["method"] == "POST" and logged["path"] == "/api/v3/contents/generations/tasks"
    assert logged["headers"]["authorization"] == f"Bearer {KEY}"
    # The SDK sends every optional field, as JSON null when unset: null means absent.
    assert logged["body"]["callback_url"] is None and logged["body"]["frames"] is None
    task = server.request("GET", f"/api/v3/contents/generations/tasks/{raw.parse().id}")
    assert task.status == 200 and task.headers["x-request-id"]
    assert set(task.body) >= {"id", "model", "status", "error", "seed", "resolution", "ratio", "duration",
                              "framespersecond", "created_at", "updated_at"}


def test_image_to_video_modes(client: Ark) -> None:
    tasks = client.content_generation.tasks
    cases: list[list[dict[str, Any]]] = [
        [text("walk forward"), image()],
        [image(f"data:image/png;base64,{PNG}", "first_frame")],
        [text("from day to night"), image(role="first_frame"), image("http://example.com/b.jpg", "last_frame")],
        [text("a boy and his dog [sim:queue_s=0] [sim:run_s=0]"), image(role="reference_image"),
         image("https://example.com/dog.webp", "reference_image")],
        [text("four refs"), *[image(role="reference_image") for _ in range(4)]],
    ]
    ids = [tasks.create(model="doubao-seedance-1-0-lite-i2v-250428", content=c, return_last_frame=True).id
           for c in cases]
    for task_id in ids:
        task = wait_for(client, task_id, ("succeeded",))
        assert task.ratio == "16:9"  # "adaptive" (the image-to-video default) resolved
        assert task.content.last_frame_url.startswith("https://") and ".png?" in task.content.last_frame_url


@pytest.mark.parametrize(("content", "detail"), [
    ([], "non-empty array"),
    ([image(), image()], "first_frame and last_frame"),
    ([image(role="first_frame"), image(role="first_frame")], "first_frame and last_frame"),
    ([image(role="last_frame")], "needs a first_frame"),
    ([image(), image(), image()], "at most two"),
    ([image(role="reference_image") for _ in range(5)], "at most 4"),
    ([image(role="reference_image"), image(role="first_frame")], "cannot be mixed"),
    ([image(role="reference_image"), image()], "cannot be mixed"),
    ([image(role="middle_frame")], "role must be one of"),
    ([image("ftp://example.com/a.png")], "http(s)"),
    ([image("data:image/svg+xml;base64,AAAA")], "data:image/<format>"),
    ([image("data:image/png;base64,@@@")], "base64 image data"),
    ([{"type": "image_url", "image_url": "https://example.com/a.png"}], "image_url object"),
    ([text("a"), text("b")], "at most one text"),
    ([{"type": "text"}], "text string"),
    ([{"type": "sound", "sound": {}}], "unsupported content type"),
    (["a cat"], "must be an object"),
    ([text("a cat --ratio 5:4")], "ratio"),
    ([text("a cat --duration 99")], "[2, 15]"),
    ([text("a cat --dur five")], "not an integer"),
    ([text("a cat --fps 30")], "16 or 24"),
    ([text("a cat --wm maybe")], "true or false"),
    ([text("a cat --seed 4294967296")], "[-1, 4294967295]"),
    ([text("a cat --rs 4k")], "480p"),
    ([text("a cat --ratio")], "needs a value"),
])
def test_invalid_content_is_refused(server: Server, content: list[Any], detail: str) -> None:
    response = server.create({"model": MODEL, "content": content})
    assert response.status == 400, response.body
    error = response.body["error"]
    assert error["code"] == "InvalidParameter" and error["type"] == "BadRequest"
    assert detail in error["message"] and "Request id: " in error["message"]


@pytest.mark.parametrize(("extra", "param"), [
    ({"bogus": 1}, "bogus"),
    ({"resolution": "4k"}, "resolution"),
    ({"ratio": "2:1"}, "ratio"),
    ({"duration": 5, "frames": 121}, "frames"),
    ({"frames": 120}, "frames"),
    ({"duration": "5"}, "duration"),
    ({"seed": -2}, "seed"),
    ({"camera_fixed": "yes"}, "camera_fixed"),
    ({"watermark": 1}, "watermark"),
    ({"return_last_frame": "true"}, "return_last_frame"),
    ({"execution_expires_after": 3599}, "execution_expires_after"),
    ({"execution_expires_after": 259201}, "execution_expires_after"),
    ({"service_tier": "premium"}, "service_tier"),
    ({"callback_url": "ftp://example.com/hook"}, "callback_url"),
    ({"callback_url": 7}, "callback_url"),
    ({"generate_audio": "yes"}, "generate_audio"),
    ({"draft": 0}, "draft"),
    ({"priority": "high"}, "priority"),
    ({"tools": [{"name": "x"}]}, "tools"),
    ({"model": ""}, "model"),
])
def test_invalid_top_level_fields_name_the_param(server: Server, extra: dict[str, Any], param: str) -> None:
    response = server.create({"model": MODEL, "content": [text("a cat")], **extra})
    assert response.status == 400
    assert response.body["error"]["code"] == "InvalidParameter" and response.body["error"]["param"] == param


@pytest.mark.parametrize("body", [{"content": [text("a cat")]}, {"model": MODEL}, {"model": None, "content": []}])
def test_missing_parameters(server: Server, body: dict[str, Any]) -> None:
    response = server.create(body)
    assert response.status == 400
    error = response.body["error"]
    assert error["code"] == "MissingParameter" and error["type"] == "BadRequest"
    assert error["param"] == ("content" if "model" in body and body["model"] else "model")


def test_sdk_raises_bad_request_with_code_and_param(client: Ark) -> None:
    with pytest.raises(ArkBadRequestError) as caught:
        client.content_generation.tasks.create(model=MODEL, content=[text("a cat")], extra_body={"fps": 24})
    assert caught.value.status_code == 400 and caught.value.code == "InvalidParameter"
    assert caught.value.param == "fps" and caught.value.type == "BadRequest"
    with pytest.raises(ArkBadRequestError) as caught:
        client.content_generation.tasks.create(model=MODEL, content=[text("a cat --duration 30")])
    assert caught.value.param == "duration"


def test_non_json_body(server: Server) -> None:
    response = server.create(b"{not json")  # type: ignore[arg-type]
    assert response.status == 400 and response.body["error"]["code"] == "InvalidParameter"


def test_top_level_fields_win_and_are_echoed(client: Ark) -> None:
    created = client.content_generation.tasks.create(
        model=MODEL, content=[text("a cat --ratio 16:9 --resolution 1080p --fps 16 --seed 3")], ratio="9:16",
        resolution="480p", frames=121, seed=42, service_tier="flex", execution_expires_after=3600,
        generate_audio=True, draft=True, priority=1, safety_identifier="user-1")
    assert created.safety_identifier == "user-1"
    task = wait_for(client, created.id, ("succeeded",))
    assert (task.ratio, task.resolution, task.frames, task.duration, task.seed) == ("9:16", "480p", 121, None, 42)
    assert task.framespersecond == 16 and task.service_tier == "flex" and task.execution_expires_after == 3600
    assert task.generate_audio is True and task.draft is True and task.priority == 1
    assert task.usage.completion_tokens == video_tokens("480p", "9:16", 121)


def test_default_resolution_follows_the_model(client: Ark) -> None:
    created = client.content_generation.tasks.create(model="doubao-seedance-1-0-pro-250528", content=[text("x")])
    assert client.content_generation.tasks.get(task_id=created.id).resolution == "1080p"


def test_draft_task_reference(client: Ark) -> None:
    tasks = client.content_generation.tasks
    draft = tasks.create(model=MODEL, content=[text("draft [sim:queue_s=0] [sim:run_s=0]")], draft=True)
    wait_for(client, draft.id, ("succeeded",))
    final = tasks.create(model=MODEL, content=[{"type": "draft_task", "draft_task": {"id": draft.id}}])
    assert tasks.get(task_id=final.id).draft_task_id == draft.id
    with pytest.raises(ArkBadRequestError, match="not a succeeded draft task"):
        tasks.create(model=MODEL, content=[{"type": "draft_task", "draft_task": {"id": final.id}}])


def test_failed_tasks(client: Ark) -> None:
    tasks = client.content_generation.tasks
    plain = tasks.create(model=MODEL, content=[text("a cat [sim:fail] [sim:queue_s=0]")])
    coded = tasks.create(model=MODEL, content=[text("a cat [sim:fail=OutputVideoSensitiveContentDetected]")])
    task = wait_for(client, plain.id, ("failed",))
    assert task.error.code == "InternalServiceError" and task.error.message
    assert task.content is None and task.usage is None
    assert wait_for(client, coded.id, ("failed",)).error.code == "OutputVideoSensitiveContentDetected"


def test_task_fail_rate() -> None:
    settings = ArkSettings(queue_s=0, run_s=0, task_fail_rate=1.0)
    with serve_in_thread(create_app(SimulatorSettings(), settings)) as url:
        client = Server(url).client(key="anything")
        created = client.content_generation.tasks.create(model=MODEL, content=[text("a cat")])
        assert wait_for(client, created.id, ("failed",)).error.code == "InternalServiceError"


def test_expired_tasks(client: Ark) -> None:
    tasks = client.content_generation.tasks
    in_queue = tasks.create(model=MODEL, content=[text("slow [sim:queue_s=5] [sim:expire_s=0.05]")],
                            service_tier="flex", execution_expires_after=3600)
    while_running = tasks.create(model=MODEL, content=[text("slow [sim:queue_s=0] [sim:run_s=5] "
                                                           "[sim:expire_s=0.15]")])
    assert tasks.get(task_id=while_running.id).status == "running"
    for task_id in (in_queue.id, while_running.id):
        task = wait_for(client, task_id, ("expired",))
        assert task.error is None and task.content is None and task.usage is None
        assert task.updated_at >= task.created_at
    assert tasks.get(task_id=in_queue.id).execution_expires_after == 3600


# List ----------------------------------------------------------------------------------------------------------

def test_list_filters_and_paging() -> None:
    with serve_in_thread(create_app(SimulatorSettings(api_key=KEY), FAST)) as url:
        server = Server(url)
        tasks = server.client().content_generation.tasks
        done = [tasks.create(model="model-a", content=[text(f"done {i} [sim:queue_s=0] [sim:run_s=0]")]).id
                for i in range(3)]
        waiting = [tasks.create(model="model-b", content=[text(f"wait {i} [sim:queue_s=30]")]).id for i in range(2)]
        tasks.delete(waiting[1])  # cancelled
        everything = tasks.list()
        assert everything.total == 5
        assert [t.id for t in everything.items] == [*reversed(waiting), *reversed(done)]  # newest first
        assert {t.id for t in tasks.list(status="succeeded").items} == set(done)
        assert [t.id for t in tasks.list(status="queued").items] == [waiting[0]]
        assert [t.id for t in tasks.list(status="cancelled").items] == [waiting[1]]
        assert tasks.list(status="failed").total == 0
        assert {t.id for t in tasks.list(model="model-b").items} == set(waiting)
        assert {t.id for t in tasks.list(task_ids=[done[0], waiting[0]]).items} == {done[0], waiting[0]}
        assert [t.id for t in tasks.list(task_ids=done[1]).items] == [done[1]]
        page = tasks.list(page_num=2, page_size=2)
        assert page.total == 5 and [t.id for t in page.items] == [done[2], done[1]]
        assert tasks.list(page_num=3, page_size=2).items[0].id == done[0]
        assert tasks.list(page_num=4, page_size=2).items == []
        assert tasks.list(model="model-a", status="queued").total == 0
        succeeded = tasks.list(status="succeeded").items[0]
        assert succeeded.usage.completion_tokens == 108900 and succeeded.content.video_url
        assert tasks.list(service_tier="default").total == 5
        logged = server.request("GET", "/_sim/requests").body[-1]
        assert logged["query"] == "filter.service_tier=default"
        query = f"filter.task_ids={done[0]}&filter.task_ids={done[1]}&page_size=500"
        assert server.request("GET", f"/api/v3/contents/generations/tasks?{query}").body["total"] == 2


@pytest.mark.parametrize("query", ["page_size=501", "page_size=0", "page_num=0", "page_num=x", "filter.status=done"])
def test_list_query_validation(server: Server, query: str) -> None:
    response = server.request("GET", f"/api/v3/contents/generations/tasks?{query}")
    assert response.status == 400 and response.body["error"]["code"] == "InvalidParameter"
    assert response.body["error"]["param"] == query.split("=")[0]


def test_sdk_list_page_size_error(client: Ark) -> None:
    with pytest.raises(ArkBadRequestError) as caught:
        client.content_generation.tasks.list(page_size=501)
    assert caught.value.param == "page_size"


# Delete --------------------------------------------------------------------------------------------------------

def test_delete_by_status(client: Ark) -> None:
    tasks = client.content_generation.tasks
    queued = tasks.create(model=MODEL, content=[text("q [sim:queue_s=30]")]).id
    running = tasks.create(model=MODEL, content=[text("r [sim:queue_s=0] [sim:run_s=30]")]).id
    succeeded = tasks.create(model=MODEL, content=[text("s [sim:queue_s=0] [sim:run_s=0]")]).id
    failed = tasks.create(model=MODEL, content=[text("f [sim:queue_s=0] [sim:run_s=0] [sim:fail]")]).id
    expired = tasks.create(model=MODEL, content=[text("e [sim:queue_s=30] [sim:expire_s=0]")]).id

    tasks.delete(queued)
    cancelled = tasks.get(task_id=queued)
    assert cancelled.status == "cancelled" and cancelled.updated_at >= cancelled.created_at
    with pytest.raises(ArkBadRequestError, match="cancelled") as caught:
        tasks.delete(queued)
    assert caught.value.code == "InvalidParameter"
    with pytest.raises(ArkBadRequestError, match="running"):
        tasks.delete(running)
    assert tasks.get(task_id=running).status == "running"
    for task_id in (succeeded, failed, expired):
        wait_for(client, task_id, ("succeeded", "failed", "expired"))
        tasks.delete(task_id)
        with pytest.raises(ArkNotFoundError):
            tasks.get(task_id=task_id)
        with pytest.raises(ArkNotFoundError):
            tasks.delete(task_id)


def test_delete_answers_empty_object(server: Server) -> None:
    created = server.create({"model": MODEL, "content": [text("q [sim:queue_s=30]")]}).body["id"]
    response = server.request("DELETE", f"/api/v3/contents/generations/tasks/{created}")
    assert response.status == 200 and response.body == {} and response.headers["x-request-id"]


def test_unknown_task_is_404(server: Server, client: Ark) -> None:
    with pytest.raises(ArkNotFoundError) as caught:
        client.content_generation.tasks.get(task_id="cgt-20250101000000-zzzzz")
    assert caught.value.code == "NotFound.TaskId" and caught.value.type == "NotFound"
    assert "cgt-20250101000000-zzzzz" in caught.value.body["message"]


# Auth, routing, models -----------------------------------------------------------------------------------------

def test_wrong_or_missing_key(server: Server) -> None:
    with pytest.raises(ArkAuthenticationError) as caught:
        server.client(key="wrong").content_generation.tasks.create(model=MODEL, content=[text("a cat")])
    assert caught.value.code == "AuthenticationError" and caught.value.type == "Unauthorized"
    for method, path in (("GET", "/api/v3/contents/generations/tasks"),
                         ("GET", "/api/v3/contents/generations/tasks/cgt-x")):
        response = server.request(method, path, key=None)
        assert response.status == 401 and response.body["error"]["code"] == "AuthenticationError"


def test_unknown_path_and_method(server: Server) -> None:
    assert server.request("GET", "/api/v3/contents/generations/other").status == 404
    response = server.request("PUT", "/api/v3/contents/generations/tasks", {})
    assert response.status == 405 and response.body["error"]["type"] == "MethodNotAllowed"
    assert server.request("GET", "/health", key=None).body == {"status": "ok"}


def test_configured_models() -> None:
    settings = ArkSettings(models=("seedance-1-0-lite-t2v",))
    with serve_in_thread(create_app(SimulatorSettings(), settings)) as url:
        tasks = Server(url).client().content_generation.tasks
        assert tasks.create(model="seedance-1-0-lite-t2v", content=[text("a cat")]).id
        with pytest.raises(ArkNotFoundError) as caught:
            tasks.create(model="gpt-4o", content=[text("a cat")])
        assert caught.value.code == "InvalidEndpointOrModel.NotFound" and caught.value.param == "model"


def test_seeded_ids_are_deterministic() -> None:
    suffixes = []
    for _ in range(2):
        with serve_in_thread(create_app(SimulatorSettings(seed=7), FAST)) as url:
            tasks = Server(url).client().content_generation.tasks
            suffixes.append([tasks.create(model=MODEL, content=[text("x")]).id.rsplit("-", 1)[1] for _ in range(3)])
    assert suffixes[0] == suffixes[1] and len(set(suffixes[0])) == 3


# Faults --------------------------------------------------------------------------------------------------------

def test_queued_429_and_500_on_create(server: Server, client: Ark) -> None:
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 429, "retry_after": 2})
    with pytest.raises(ArkRateLimitError) as caught:
        client.content_generation.tasks.create(model=MODEL, content=[text("a cat")])
    assert caught.value.code == "RateLimitExceeded.EndpointRPMExceeded" and caught.value.type == "TooManyRequests"
    assert caught.value.response.headers["retry-after"] == "2"
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 500})
    with pytest.raises(ArkInternalServerError) as server_error:
        client.content_generation.tasks.create(model=MODEL, content=[text("a cat")])
    assert server_error.value.code == "InternalServiceError" and server_error.value.type == "InternalServerError"
    assert client.content_generation.tasks.create(model=MODEL, content=[text("a cat")]).id


def test_sdk_retries_5xx_by_itself(server: Server) -> None:
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 500, "count": 1})
    created = server.client(max_retries=2).content_generation.tasks.create(model=MODEL, content=[text("a cat")])
    assert created.id
    log = server.request("GET", "/_sim/requests").body
    assert [entry["method"] for entry in log] == ["POST", "POST"]
    # The SDK makes a fresh X-Client-Request-Id per attempt.
    assert log[0]["headers"]["x-client-request-id"] != log[1]["headers"]["x-client-request-id"]


def test_faults_for_get_list_and_delete(server: Server, client: Ark) -> None:
    tasks = client.content_generation.tasks
    created = tasks.create(model=MODEL, content=[text("a cat [sim:queue_s=30]")]).id
    assert server.request("POST", "/_sim/faults", {"kind": "status", "status": 500, "operation": "get"}).status == 200
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 429, "operation": "list"})
    server.request("POST", "/_sim/faults", {"kind": "status", "status": 503, "operation": "delete"})
    pending = server.request("GET", "/_sim/faults").body
    assert [(f["operation"], f["status"]) for f in pending] == [("get", 500), ("list", 429), ("delete", 503)]
    tasks.create(model=MODEL, content=[text("create is not affected")])
    with pytest.raises(ArkInternalServerError):
        tasks.get(task_id=created)
    assert tasks.get(task_id=created).status == "queued"  # one use only
    with pytest.raises(ArkRateLimitError):
        tasks.list()
    with pytest.raises(ArkInternalServerError) as caught:
        tasks.delete(created)
    assert caught.value.status_code == 503 and caught.value.code == "InternalServiceError"
    tasks.delete(created)
    bad = server.request("POST", "/_sim/faults", {"kind": "status", "operation": "patch"})
    assert bad.status == 400 and bad.body["error"]["param"] == "operation"


def test_read_disconnect_and_timeout_faults(server: Server, client: Ark) -> None:
    created = client.content_generation.tasks.create(model=MODEL, content=[text("a cat")]).id
    server.request("POST", "/_sim/faults", {"kind": "midstream_disconnect", "operation": "get"})
    with pytest.raises(Exception, match="Connection error"):
        client.content_generation.tasks.get(task_id=created)
    server.request("POST", "/_sim/faults", {"kind": "timeout", "delay_ms": 150, "operation": "get"})
    started = time.monotonic()
    assert client.content_generation.tasks.get(task_id=created).id == created
    assert time.monotonic() - started >= 0.15


def test_prompt_directives_fault_the_create_call(server: Server, client: Ark) -> None:
    with pytest.raises(ArkRateLimitError):
        client.content_generation.tasks.create(model=MODEL, content=[text("a cat [sim:status=429]")])
    before = len(server.request("GET", "/_sim/tasks").body)
    # A lost response: the task exists upstream, the client never learns its id.
    with pytest.raises(Exception, match="Connection error"):
        client.content_generation.tasks.create(model=MODEL, content=[text("a cat [sim:midstream_disconnect=1]")])
    assert len(server.request("GET", "/_sim/tasks").body) == before + 1


def test_fail_rate_applies_to_create_only() -> None:
    with serve_in_thread(create_app(SimulatorSettings(fail_rate=1.0, fail_status=503), FAST)) as url:
        tasks = Server(url).client().content_generation.tasks
        with pytest.raises(ArkInternalServerError):
            tasks.create(model=MODEL, content=[text("a cat")])
        assert tasks.list().total == 0


# Callbacks -----------------------------------------------------------------------------------------------------

@dataclass
class Receiver:
    url: str
    received: list[dict[str, Any]]
    statuses: list[int]  # answers to give, in order (then 200)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received: list[dict[str, Any]] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "content_type": self.headers["Content-Type"], "body": body})
            self.send_response(statuses.pop(0) if statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{httpd.server_address[1]}/hook", received, statuses)
    finally:
        httpd.shutdown()
        httpd.server_close()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0,
               message: Callable[[], str] = lambda: "timed out") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message()
        time.sleep(0.01)


def test_callbacks_on_every_status_change(server: Server, client: Ark, receiver: Receiver) -> None:
    created = client.content_generation.tasks.create(model=MODEL, content=[text("a cat")],
                                                     callback_url=receiver.url + "?k=1", return_last_frame=True)
    wait_until(lambda: len(receiver.received) == 3)
    assert [r["body"]["status"] for r in receiver.received] == ["queued", "running", "succeeded"]
    assert all(r["path"] == "/hook?k=1" and r["content_type"] == "application/json" for r in receiver.received)
    final = server.request("GET", f"/api/v3/contents/generations/tasks/{created.id}").body
    assert receiver.received[-1]["body"] == final and final["content"]["last_frame_url"]
    assert "content" not in receiver.received[0]["body"] and "usage" not in receiver.received[1]["body"]
    log = server.request("GET", "/_sim/callbacks").body
    assert [(c["status"], c["http_status"], c["attempt"]) for c in log] == [
        ("queued", 200, 1), ("running", 200, 1), ("succeeded", 200, 1)]
    assert server.request("DELETE", "/_sim/callbacks").body == {"cleared": True}


def test_callbacks_for_cancel_failure_and_retries(client: Ark, server: Server, receiver: Receiver) -> None:
    tasks = client.content_generation.tasks
    queued = tasks.create(model=MODEL, content=[text("a cat [sim:queue_s=30]")], callback_url=receiver.url)
    wait_until(lambda: len(receiver.received) == 1)
    tasks.delete(queued.id)
    wait_until(lambda: len(receiver.received) == 2)
    assert [r["body"]["status"] for r in receiver.received] == ["queued", "cancelled"]

    receiver.received.clear()
    # queued is acknowledged; running fails (not retried: only terminal callbacks are); failed fails twice
    receiver.statuses.extend([200, 500, 500, 503])
    tasks.create(model=MODEL, content=[text("a cat [sim:fail] [sim:queue_s=0]")], callback_url=receiver.url)
    wait_until(lambda: len(receiver.received) == 5, message=lambda: str(receiver.received))
    assert [r["body"]["status"] for r in receiver.received] == ["queued", "running", "failed", "failed", "failed"]
    assert receiver.received[-1]["body"]["error"]["code"] == "InternalServiceError"
    attempts = [(c["status"], c["attempt"], c["http_status"]) for c in server.request("GET", "/_sim/callbacks").body]
    assert attempts[-4:] == [("running", 1, 500), ("failed", 1, 500), ("failed", 2, 503), ("failed", 3, 200)]


def test_unreachable_callback_is_recorded(server: Server, client: Ark) -> None:
    client.content_generation.tasks.create(model=MODEL, content=[text("a cat [sim:queue_s=0] [sim:run_s=0]")],
                                           callback_url="http://127.0.0.1:9/hook")
    wait_until(lambda: len(server.request("GET", "/_sim/callbacks").body) == 1 + 1 + 3)
    log = server.request("GET", "/_sim/callbacks").body
    assert all(c["http_status"] is None and c["error"] for c in log)


# Combined ------------------------------------------------------------------------------------------------------

def test_combined_simulator_serves_ark(receiver: Receiver) -> None:
    with serve_in_thread(create_combined(SimulatorSettings(api_key=KEY), FAST)) as url:
        server = Server(url)
        tasks = server.client().content_generation.tasks
        created = tasks.create(model=MODEL, content=[text("a cat")], callback_url=receiver.url)
        assert wait_for(server.client(), created.id, ("succeeded",)).usage.total_tokens == 108900
        assert tasks.list().total == 1
        wait_until(lambda: len(server.request("GET", "/_sim/ark/callbacks").body) == 3)
        server.request("POST", "/_sim/ark/faults", {"kind": "status", "status": 500, "operation": "get"})
        faults = server.request("GET", "/_sim/faults").body
        assert faults["ark"][0]["operation"] == "get" and faults["openai"] == []
        assert [e["method"] for e in server.request("GET", "/_sim/requests").body["ark"]][:1] == ["POST"]
