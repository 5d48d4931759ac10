"""`yourouter serve --workers N` (yourouter/prefork.py): forked workers, their supervision and their failures."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from openai import OpenAI
from sqlalchemy import text

from tests.support.gateway import STATIC_KEY, closed_port, gateway_config, http
from tests.support.process import serve_process, write_config, yourouter
from yourouter.pipeline.core import new_request_id
from yourouter.storage.db import create_engine

USER = [{"role": "user", "content": "hi"}]


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return {int(child) for child in listing.read().split()}


def _prefix(request_id: str) -> str:
    return request_id[:-12]  # the per-process prefix, without the 12-digit counter


def _until_both_answered(url: str) -> None:
    """New connections until two request-id prefixes (two workers) have answered."""
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only {seen} answered"
        seen.add(_prefix(http("GET", url + "/health", timeout=5).headers["x-request-id"]))


def test_a_forked_worker_draws_its_own_request_id_prefix() -> None:
    """Workers are forked from one parent: with a shared prefix, two workers would hand out the same ids."""
    parent_id = new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id and leave without running pytest's teardown
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id.startswith("req_") and _prefix(child_id) != _prefix(parent_id)
    assert child_id.endswith("000000000001")  # the child's counter starts again too


def test_a_killed_worker_is_replaced_and_serving_goes_on(sim_a: str, sim_b: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "gw.yaml", gateway_config(sim_a, sim_b, f"sqlite:///{tmp_path / 'w.db'}"))
    with serve_process(path, "--workers", "2") as gateway:
        workers = _children(gateway.process.pid)
        assert len(workers) == 2
        _until_both_answered(gateway.url)  # a worker killed before it served would stop `serve` (by design)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            now = _children(gateway.process.pid)
            if len(now) == 2 and victim not in now:
                break
            assert time.monotonic() < deadline, f"no replacement worker: {now}"
            time.sleep(0.05)
        client = OpenAI(base_url=gateway.url + "/v1", api_key=STATIC_KEY, max_retries=0)
        for _ in range(6):
            assert client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
        assert gateway.stop() == 0
        assert f"worker {victim} exited unexpectedly" in gateway.log
    for pid in now:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_the_rows_of_a_killed_worker_are_written_by_its_replacement(sim_a: str, sim_b: str, tmp_path: Path) -> None:
    """The OOM killer's case: a worker dies with answered requests not yet in the database (a long flush
    interval keeps them in memory); the worker that replaces it writes them from the dead one's journal."""
    database_url = f"sqlite:///{tmp_path / 'w.db'}"
    config = gateway_config(sim_a, sim_b, database_url)
    config["usage"] = {"flush_interval_s": 3600, "batch_size": 100_000, "spill_dir": str(tmp_path / "spill")}
    path = write_config(tmp_path / "gw.yaml", config)
    answered: dict[str, set[str]] = {}
    with serve_process(path, "--workers", "2") as gateway:
        workers = _children(gateway.process.pid)
        deadline = time.monotonic() + 20
        while len(answered) < 2 or min(len(ids) for ids in answered.values()) < 3:  # each worker answered some
            assert time.monotonic() < deadline, f"answered: {answered}"
            reply = http("POST", gateway.url + "/v1/chat/completions", {"model": "gpt-4o", "messages": USER},
                         {"Authorization": f"Bearer {STATIC_KEY}"})
            assert reply.status == 200
            request_id = reply.headers["x-request-id"]
            answered.setdefault(_prefix(request_id), set()).add(request_id)
        time.sleep(0.2)  # a row reaches the journal one event-loop iteration after its response
        assert len(list((tmp_path / "spill").glob("journal-*"))) == 2  # one per worker; nothing is in the database
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while len(_children(gateway.process.pid) - {victim}) < 2:  # the replacement has started (and replayed)
            assert time.monotonic() < deadline, "no replacement worker"
            time.sleep(0.05)
        assert gateway.stop() == 0  # the surviving worker writes its own rows at shutdown
    ids = asyncio.run(_request_ids(database_url))
    assert ids == set().union(*answered.values())  # every answered request, the killed worker's included, once
    assert list((tmp_path / "spill").glob("journal-*")) == []


async def _request_ids(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return set((await conn.execute(text("SELECT request_id FROM usage"))).scalars())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_worker_that_cannot_build_its_gateway_stops_serve(tmp_path: Path, workers: str) -> None:
    """A Bedrock deployment with no AWS credentials anywhere: found when the gateway is built, in each worker."""
    path = write_config(tmp_path / "gw.yaml", {
        "database_url": f"sqlite:///{tmp_path / 'w.db'}",
        "providers": [{"name": "bedrock-main", "vendor": "aws", "base_url": "https://bedrock-runtime.us-east-1"
                       ".amazonaws.com", "models": ["claude-3-5-haiku"]}]})
    env = {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    if any(os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE")):
        pytest.skip("this environment has AWS credentials of its own")
    pytest.importorskip("botocore")
    result = yourouter("serve", "--config", str(path), "--port", str(closed_port()), "--workers", workers, env=env,
                       timeout=60)
    assert result.returncode == 2, result.stderr
    assert "providers.bedrock-main: no AWS credentials" in result.stderr
    if workers == "2":
        assert "before it served; stopping" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unreachable_database_fails_the_start_with_a_message(tmp_path: Path, workers: str) -> None:
    path = write_config(tmp_path / "gw.yaml", {
        "database_url": f"postgresql://postgres@127.0.0.1:{closed_port()}/test",
        "providers": [{"name": "a", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-up",
                       "models": ["m"]}]})
    result = yourouter("serve", "--config", str(path), "--port", str(closed_port()), "--workers", workers,
                       timeout=60)
    assert result.returncode == 3, result.stderr
    assert "Connect call failed" in result.stderr or "Connection refused" in result.stderr
    assert ("cannot prepare the database (postgresql)" if workers == "2" else "startup failed") in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
