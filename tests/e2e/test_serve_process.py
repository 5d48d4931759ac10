"""`yourouter serve` as a real process: graceful-shutdown flush of the ledger, logs, workers, demo, config errors."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai import OpenAI

from tests.support.gateway import STATIC_KEY, UPSTREAM_KEY, closed_port, gateway_config, http
from tests.support.process import serve_process, write_config, yourouter
from yourouter.storage.db import create_engine
from yourouter.storage.repositories import UsageRepository

USER = [{"role": "user", "content": "hi"}]


def _count_rows(database_url: str) -> int:
    async def count() -> int:
        engine = create_engine(database_url)
        try:
            return await UsageRepository(engine).count()
        finally:
            await engine.dispose()

    return asyncio.run(count())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_flushes_every_usage_row(sim_a: str, sim_b: str, tmp_path: Path, sig: int) -> None:
    database_url = f"sqlite:///{tmp_path / 'flush.db'}"
    config = gateway_config(sim_a, sim_b, database_url)
    config["usage"] = {"batch_size": 100_000, "flush_interval_s": 3600}  # nothing is written before shutdown
    path = write_config(tmp_path / "gw.yaml", config)
    with serve_process(path) as gateway:
        client = OpenAI(base_url=gateway.url + "/v1", api_key=STATIC_KEY, max_retries=0)
        for _ in range(15):
            client.chat.completions.create(model="gpt-4o", messages=USER)
        for _ in range(5):
            list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True))
        assert http("POST", gateway.url + "/v1/chat/completions", {"model": "gpt-4o", "messages": USER},
                    {"Authorization": "Bearer sk-bad"}).status == 401
        assert _count_rows(database_url) == 0
        # uvicorn re-raises the signal after its graceful shutdown, so "killed by sig" is a clean exit here.
        assert gateway.stop(sig) in (0, -sig)
        log = gateway.log
    assert _count_rows(database_url) == 21
    lines = [json.loads(line) for line in log.splitlines() if line.startswith('{"event":"request"')]
    assert len(lines) == 21 and {line["status"] for line in lines} == {200, 401}
    assert all(line["request_id"].startswith("req_") for line in lines)
    for secret in (STATIC_KEY, UPSTREAM_KEY, "sk-bad", "You said"):
        assert secret not in log  # no keys and no bodies in the log


def test_two_workers_serve_and_share_the_database(sim_a: str, sim_b: str, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'workers.db'}"
    path = write_config(tmp_path / "gw.yaml", gateway_config(sim_a, sim_b, database_url))
    with serve_process(path, "--workers", "2") as gateway:
        client = OpenAI(base_url=gateway.url + "/v1", api_key=STATIC_KEY, max_retries=0)
        ids = {client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
               .headers["x-request-id"] for _ in range(10)}
        assert len(ids) == 10
        assert gateway.stop() in (0, -signal.SIGTERM)
    assert _count_rows(database_url) == 10


def _demo_banner(process: subprocess.Popen[str]) -> str:
    banner = ""
    while "curl" not in banner:
        line = process.stdout.readline() if process.stdout else ""
        assert line, f"demo exited early: {banner}"
        banner += line
    return banner


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_banner_is_printed_once_the_gateway_answers(tmp_path: Path, workers: str) -> None:
    """The README's quick start: the curl that `serve --demo` prints, run the moment it is printed, is answered
    (the banner used to come ~0.4 s before the socket listened, and a pasted-at-once curl was refused)."""
    port = closed_port()
    process = subprocess.Popen([sys.executable, "-m", "yourouter", "serve", "--demo", "--port", str(port),
                                "--workers", workers], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=tmp_path)
    try:
        curl = re.search(r"curl .*", _demo_banner(process)).group(0)
        result = subprocess.run(curl + " --no-progress-meter", shell=True, capture_output=True, text=True, timeout=20)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["choices"][0]["message"]["content"].startswith("Hello from the simulator")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_demo_quick_start(tmp_path: Path) -> None:
    port = closed_port()
    process = subprocess.Popen([sys.executable, "-m", "yourouter", "serve", "--demo", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        banner = _demo_banner(process)
        curl = re.search(r"curl .*", banner).group(0)
        key = re.search(r"sk-yr-demo-\w+", banner).group(0)
        result = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=20)
        assert json.loads(result.stdout)["choices"][0]["message"]["content"].startswith("Hello from the simulator")
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        assert [m.id for m in client.models.list()] == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small",
                                                         "claude-sonnet-4-5", "gemini-2.5-flash",
                                                         "gemini-embedding-001", "claude-3-5-haiku"]  # on Bedrock
        haiku = client.chat.completions.with_raw_response.create(
            model="claude-3-5-haiku", messages=[{"role": "user", "content": "hi"}])
        assert haiku.headers["x-yourouter-provider"] == "demo-bedrock" and haiku.parse().choices
        import anthropic

        claude = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=key, max_retries=0)
        reply = claude.messages.create(model="gpt-4o", max_tokens=50, messages=USER)  # translated
        assert reply.content[0].text.startswith("Hello from the simulator")
        assert claude.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=USER).content
        assert len(client.embeddings.create(model="text-embedding-3-small", input="x").data) == 1
        assert "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o", messages=USER, stream=True) if c.choices)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_bad_config_fails_at_start_with_a_message(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bad.yaml", {
        "providers": [{"name": "x", "base_url": "ftp://nowhere", "models": ["m"], "colour": "blue"}],
        "port": "eighty"})
    for command in (["check-config", "--config", str(path)], ["serve", "--config", str(path)]):
        result = yourouter(*command)
        assert result.returncode == 2
        assert "providers.0.base_url: must start with http:// or https://" in result.stderr
        assert "providers.0.colour: unknown key" in result.stderr and "port:" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
    missing = write_config(tmp_path / "env.yaml", {"master_key": "${YR_TEST_UNSET_VARIABLE}"})
    result = yourouter("check-config", "--config", str(missing), env={})
    assert result.returncode == 2 and "master_key: environment variable YR_TEST_UNSET_VARIABLE is not set" \
        in result.stderr
    assert "does not exist" in yourouter("check-config", "--config", str(tmp_path / "nope.yaml")).stderr


def test_check_config_ok(tmp_path: Path) -> None:
    path = write_config(tmp_path / "ok.yaml", {"providers": [{"name": "openai-main", "type": "openai",
                                                              "base_url": "https://api.openai.com/v1",
                                                              "api_key": "${YR_TEST_KEY}", "models": ["gpt-4o"]}]})
    result = yourouter("check-config", "--config", str(path), env={"YR_TEST_KEY": "sk-x"})
    assert result.returncode == 0 and "1 provider(s)" in result.stdout


def test_simulate_command_serves_the_official_sdk() -> None:
    port = closed_port()
    process = subprocess.Popen([sys.executable, "-m", "yourouter", "simulate", "--port", str(port),
                                "--api-key", "sk-sim"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-sim", max_retries=0)
        deadline = time.monotonic() + 20
        while True:
            try:
                models = [m.id for m in client.models.list()]
                break
            except Exception:
                assert time.monotonic() < deadline, "simulator never became ready"
                time.sleep(0.1)
        assert "gpt-4o" in models
        reply = client.chat.completions.create(model="gpt-4o", messages=USER)
        assert reply.choices[0].message.content.startswith("Hello from the simulator")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
