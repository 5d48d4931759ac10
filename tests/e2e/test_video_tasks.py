"""Ark video tasks through the gateway, with the official `volcengine-ark-runtime` SDK: text- and image-to-video,
polling to success, ownership, listing, deleting, failover before acceptance, budgets, and billing exactly once —
by client reads, by the poller alone, by two gateway processes polling at once, and across a restart."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from volcenginesdkarkruntime import Ark
from volcenginesdkarkruntime._exceptions import ArkAPIStatusError

from tests.support.dialects import PNG_1PX
from tests.support.gateway import GatewayHandle, start_gateway
from tests.support.process import serve_process, write_config
from yourouter.config import settings_from_mapping
from yourouter.simulators._ark_tasks import ArkSettings
from yourouter.simulators.ark import create_app as ark_sim
from yourouter.simulators.background import serve_in_thread
from yourouter.simulators.openai import SimulatorSettings
from yourouter.storage.db import create_engine
from yourouter.storage.repositories import UsageRepository

UPSTREAM_KEY = "ark-upstream-secret"
OWNER, OTHER, POOR = "sk-video-owner-0001", "sk-video-other-0001", "sk-video-poor-00001"
MODEL = "seedance-pro"
UPSTREAM_MODEL = "doubao-seedance-1-0-pro-250528"  # priced at 2.50 USD per 1M completion tokens
PRICE = Decimal("2.50") / 1_000_000
PROMPT = "a cat surfing a wave --ratio 16:9 --duration 5 --rs 720p"


def _config(sims: list[str], database_url: str, poll_s: float = 0.1) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "usage": {"flush_interval_s": 0.05},
        "log_requests": False,
        "routing": {"strategy": "ordered", "cooldown_failures": 1000},
        "video_tasks": {"poll_interval_s": poll_s, "lease_s": 5},
        "keys": [{"key": OWNER, "name": "owner"}, {"key": OTHER, "name": "other"},
                 {"key": POOR, "name": "poor", "budget_usd": 0.01}],
        "providers": [{"name": f"ark-{i}", "vendor": "byteplus", "base_url": f"{sim}/api/v3",
                       "api_key": UPSTREAM_KEY, "models": [{"name": MODEL, "upstream": UPSTREAM_MODEL}]}
                      for i, sim in enumerate(sims)],
    }


@pytest.fixture(scope="module")
def ark_upstreams() -> Iterator[list[str]]:
    timings = ArkSettings(queue_s=0.15, run_s=0.3)
    settings = SimulatorSettings(api_key=UPSTREAM_KEY)
    with serve_in_thread(ark_sim(settings, timings)) as first, serve_in_thread(ark_sim(settings, timings)) as second:
        yield [first, second]


@pytest.fixture()
def video(ark_upstreams: list[str], tmp_path: Path) -> Iterator[GatewayHandle]:
    settings = settings_from_mapping(_config(ark_upstreams, f"sqlite:///{tmp_path / 'video.db'}"), env={})
    with start_gateway(settings, sims={"a": ark_upstreams[0], "b": ark_upstreams[1]}) as gateway:
        yield gateway
    for sim in ark_upstreams:
        GatewayHandle.sim_control(sim, "DELETE", "/_sim/faults")


def _ark(gateway: GatewayHandle | str, key: str = OWNER) -> Ark:
    url = gateway if isinstance(gateway, str) else gateway.url
    return Ark(base_url=url + "/api/v3", api_key=key, max_retries=0, timeout=10)


def _wait(client: Ark, task_id: str, want: str = "succeeded", timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        task = client.content_generation.tasks.get(task_id=task_id)
        seen.append(task.status)
        if task.status == want:
            return task, seen
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never became {want}: {seen[-5:]}")


def _billing_rows(database_url: str, task_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        engine = create_engine(database_url)
        try:
            return [r for r in await UsageRepository(engine).by_request_id(task_id) if r["endpoint"] == "video.tasks"]
        finally:
            await engine.dispose()

    deadline = time.monotonic() + timeout
    while True:
        rows = asyncio.run(read())
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_text_to_video_polled_to_success_and_billed_once(video: GatewayHandle) -> None:
    client = _ark(video)
    created = client.content_generation.tasks.create(model=MODEL, content=[{"type": "text", "text": PROMPT}])
    assert created.id.startswith("cgt-")
    task, seen = _wait(client, created.id)
    assert "queued" in seen or "running" in seen
    assert task.content.video_url.startswith("https://") and task.usage.completion_tokens == 108900
    upstream = [r for r in video.sim_requests("a") if r["method"] == "POST"][-1]
    assert upstream["body"]["model"] == UPSTREAM_MODEL and upstream["headers"]["authorization"] == \
        f"Bearer {UPSTREAM_KEY}" and OWNER not in str(upstream)
    for _ in range(3):  # reading a settled task again bills nothing more
        assert client.content_generation.tasks.get(task_id=created.id).status == "succeeded"
    rows = _billing_rows(video.settings.database_url, created.id)
    assert len(rows) == 1 and rows[0]["completion_tokens"] == 108900 and rows[0]["key_name"] == "owner"
    assert Decimal(str(rows[0]["cost_usd"])) == 108900 * PRICE and rows[0]["outcome"] == "ok"


def test_image_to_video_first_and_last_frames(video: GatewayHandle) -> None:
    client = _ark(video)
    image = f"data:image/png;base64,{PNG_1PX}"
    created = client.content_generation.tasks.create(model=MODEL, return_last_frame=True, content=[
        {"type": "text", "text": "the cat jumps"},
        {"type": "image_url", "image_url": {"url": image}, "role": "first_frame"},
        {"type": "image_url", "image_url": {"url": image}, "role": "last_frame"}])
    task, _ = _wait(client, created.id)
    assert task.content.last_frame_url
    body = [r for r in video.sim_requests("a") if r["method"] == "POST"][-1]["body"]
    assert [item.get("role") for item in body["content"]] == [None, "first_frame", "last_frame"]


def test_only_the_owner_sees_lists_or_deletes_a_task(video: GatewayHandle) -> None:
    owner, other = _ark(video), _ark(video, OTHER)
    created = owner.content_generation.tasks.create(model=MODEL, content=[{"type": "text", "text": PROMPT}])
    for call in (lambda: other.content_generation.tasks.get(task_id=created.id),
                 lambda: other.content_generation.tasks.delete(task_id=created.id),
                 lambda: owner.content_generation.tasks.get(task_id="cgt-20990101000000-nope0")):
        with pytest.raises(ArkAPIStatusError) as missing:
            call()
        assert missing.value.status_code == 404 and missing.value.code == "NotFound.TaskId"
    assert other.content_generation.tasks.list().total == 0
    listed = owner.content_generation.tasks.list(task_ids=[created.id])
    assert listed.total == 1 and listed.items[0].id == created.id


def test_list_filters_and_pages(video: GatewayHandle) -> None:
    client = _ark(video)
    ids = [client.content_generation.tasks.create(model=MODEL, content=[{"type": "text", "text": f"{PROMPT} {i}"}]).id
           for i in range(3)]
    failed = client.content_generation.tasks.create(model=MODEL, content=[{"type": "text",
                                                                            "text": "doomed [sim:fail]"}]).id
    _wait(client, failed, "failed")
    for task_id in ids:
        _wait(client, task_id)
    everything = client.content_generation.tasks.list(page_size=500)
    assert [item.id for item in everything.items][:4] == [failed, *reversed(ids)]  # newest first
    assert client.content_generation.tasks.list(status="failed").total == 1
    assert client.content_generation.tasks.list(model=MODEL).total == everything.total
    page = client.content_generation.tasks.list(page_num=2, page_size=2)
    assert [item.id for item in page.items] == [item.id for item in everything.items[2:4]]
    with pytest.raises(ArkAPIStatusError) as bad:
        client.content_generation.tasks.list(page_size=501)
    assert bad.value.status_code == 400 and bad.value.code == "InvalidParameter"
    failed_row = _billing_rows(video.settings.database_url, failed)[0]
    assert float(failed_row["cost_usd"]) == 0 and failed_row["outcome"] == "upstream_error"  # failures cost nothing


def test_delete_cancels_queued_and_removes_finished(video: GatewayHandle) -> None:
    client = _ark(video)
    queued = client.content_generation.tasks.create(model=MODEL, content=[{"type": "text",
                                                                           "text": "wait [sim:queue_s=30]"}])
    client.content_generation.tasks.delete(task_id=queued.id)
    assert client.content_generation.tasks.get(task_id=queued.id).status == "cancelled"
    assert float(_billing_rows(video.settings.database_url, queued.id)[0]["cost_usd"]) == 0
    done = client.content_generation.tasks.create(model=MODEL, content=[{"type": "text", "text": PROMPT}])
    _wait(client, done.id)
    client.content_generation.tasks.delete(task_id=done.id)
    with pytest.raises(ArkAPIStatusError) as gone:
        client.content_generation.tasks.get(task_id=done.id)
    assert gone.value.status_code == 404
    long_run = "long [sim:queue_s=0] [sim:run_s=30]"
    running = client.content_generation.tasks.create(model=MODEL, content=[{"type": "text", "text": long_run}])
    time.sleep(0.2)
    with pytest.raises(ArkAPIStatusError) as refused:  # Ark refuses to cancel a running task: its error, as is
        client.content_generation.tasks.delete(task_id=running.id)
    assert refused.value.status_code == 400


def test_the_poller_finishes_a_task_no_client_polls(video: GatewayHandle) -> None:
    created = _ark(video).content_generation.tasks.create(model=MODEL, content=[{"type": "text", "text": PROMPT}])
    rows = _billing_rows(video.settings.database_url, created.id, timeout=10)
    assert len(rows) == 1 and rows[0]["completion_tokens"] == 108900


def test_create_fails_over_before_acceptance_and_errors_are_arks(video: GatewayHandle) -> None:
    video.fault("a", kind="status", status=500)
    response = video.post("/api/v3/contents/generations/tasks", {"model": MODEL, "content": [
        {"type": "text", "text": PROMPT}]}, key=OWNER)
    assert response.status == 200 and response.headers["x-yourouter-provider"] == "ark-1"
    assert response.headers["x-request-id"] and response.json()["id"].startswith("cgt-")
    missing = video.post("/api/v3/contents/generations/tasks", {"content": [{"type": "text", "text": "x"}]},
                         key=OWNER)
    assert missing.status == 400 and missing.json()["error"] == {
        "code": "MissingParameter", "message": missing.json()["error"]["message"], "param": "model",
        "type": "BadRequest"}
    invalid = video.post("/api/v3/contents/generations/tasks", {"model": MODEL, "content": [
        {"type": "text", "text": "x --ratio 7:3"}]}, key=OWNER)
    assert invalid.status == 400 and invalid.json()["error"]["code"] == "InvalidParameter"  # Ark's own 400
    with pytest.raises(ArkAPIStatusError) as unauthorized:
        _ark(video, "sk-wrong").content_generation.tasks.create(model=MODEL, content=[{"type": "text", "text": "x"}])
    assert unauthorized.value.status_code == 401 and unauthorized.value.code == "AuthenticationError"
    x_api_key = video.post("/api/v3/contents/generations/tasks", {"model": MODEL, "content": [
        {"type": "text", "text": PROMPT}]}, key=None, headers={"x-api-key": OWNER})
    assert x_api_key.status == 200


def test_budget_is_checked_before_creating(video: GatewayHandle) -> None:
    with pytest.raises(ArkAPIStatusError) as refused:  # a 1080p 5 s clip reserves ~0.66 USD: over 0.01
        _ark(video, POOR).content_generation.tasks.create(model=MODEL, content=[{"type": "text", "text": "x"}])
    assert refused.value.status_code == 429 and refused.value.code == "QuotaExceeded"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_processes_polling_at_once_bill_each_task_once(ark_upstreams: list[str], tmp_path: Path, database: str,
                                                           request: pytest.FixtureRequest) -> None:
    database_url = (f"sqlite:///{tmp_path / 'shared.db'}" if database == "sqlite"
                    else request.getfixturevalue("postgres_url"))
    path = write_config(tmp_path / "gw.yaml", _config(ark_upstreams[:1], database_url, poll_s=0.02))
    with serve_process(path) as first, serve_process(path) as second:
        clients = [_ark(first.url), _ark(second.url)]
        ids = [clients[i % 2].content_generation.tasks.create(
            model=MODEL, content=[{"type": "text", "text": f"{PROMPT} {i} [sim:run_s=0.4]"}]).id for i in range(6)]

        def poll(pair: tuple[int, str]) -> str:  # both processes read every task while both pollers run
            return _wait(clients[pair[0] % 2], pair[1], timeout=15)[0].status

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(poll, [(i, task_id) for i in range(2) for task_id in ids]))
        assert set(statuses) == {"succeeded"}
    for task_id in ids:
        rows = _billing_rows(database_url, task_id)
        assert len(rows) == 1 and rows[0]["completion_tokens"] > 0


def test_a_restart_in_the_middle_of_a_task(ark_upstreams: list[str], tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'restart.db'}"
    path = write_config(tmp_path / "gw.yaml", _config(ark_upstreams[:1], database_url))
    with serve_process(path) as gateway:
        task_id = _ark(gateway.url).content_generation.tasks.create(
            model=MODEL, content=[{"type": "text", "text": f"{PROMPT} [sim:run_s=1.5]"}]).id
        gateway.stop()  # the task is still running upstream
    assert _billing_rows(database_url, task_id, timeout=0.2) == []
    with serve_process(path) as again:
        task, _ = _wait(_ark(again.url), task_id)  # the new process knows the task and its owner
        assert task.status == "succeeded"
        assert len(_billing_rows(database_url, task_id)) == 1
