"""Client keys: created over the admin API and the CLI, stored hashed, shown once, revoked."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import openai
import pytest
from sqlalchemy import select

from tests.support.gateway import MASTER_KEY, GatewayHandle, gateway_config, start_gateway
from tests.support.process import write_config, yourouter
from yourouter.config import settings_from_mapping
from yourouter.storage.db import create_engine
from yourouter.storage.tables import api_keys

USER = [{"role": "user", "content": "hi"}]


def _admin(gateway: GatewayHandle, method: str, path: str, body: object = None, key: str = MASTER_KEY):
    from tests.support.gateway import http

    return http(method, gateway.url + path, body, {"Authorization": f"Bearer {key}"})


def _stored_rows(database_url: str) -> list[dict]:
    async def read() -> list[dict]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return [dict(row._mapping) for row in await conn.execute(select(api_keys))]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_admin_api_create_use_list_revoke(gateway: GatewayHandle) -> None:
    created = _admin(gateway, "POST", "/admin/keys", {"name": "team-a", "models": ["gpt-4o-mini"]})
    assert created.status == 201
    body = created.json()
    key, key_id = body["key"], body["id"]
    assert key.startswith("sk-yr-") and body["models"] == ["gpt-4o-mini"] and body["status"] == "active"

    client = gateway.client(key=key)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o", messages=USER)  # not in the key's models

    listed = _admin(gateway, "GET", "/admin/keys")
    assert listed.status == 200 and key not in listed.body.decode()
    entry = next(item for item in listed.json()["data"] if item["id"] == key_id)
    assert entry["key_prefix"] == key[:10] and "key" not in entry and "key_hash" not in entry
    assert _admin(gateway, "GET", f"/admin/keys/{key_id}").json()["name"] == "team-a"

    rows = [row for row in _stored_rows(gateway.settings.database_url) if row["id"] == key_id]
    assert rows and key not in json.dumps(rows, default=str)  # only the hash is stored
    assert rows[0]["key_hash"] != key and len(rows[0]["key_hash"]) == 64

    revoked = _admin(gateway, "DELETE", f"/admin/keys/{key_id}")
    assert revoked.status == 200 and revoked.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError):  # at once in the process that revoked it
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert _admin(gateway, "DELETE", "/admin/keys/key_nope").status == 404


def test_admin_api_needs_master_key(gateway: GatewayHandle) -> None:
    for key in ("sk-test-static-key-0001", "wrong"):
        response = _admin(gateway, "GET", "/admin/keys", key=key)
        assert response.status == 401 and response.json()["error"]["code"] == "invalid_api_key"
    response = _admin(gateway, "POST", "/admin/keys", {"models": ["*"]})
    assert response.status == 400 and response.json()["error"]["param"] == "name"


def test_cli_keys_create_list_revoke(sim_a: str, sim_b: str, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'cli.db'}"
    config = gateway_config(sim_a, sim_b, database_url)
    config["key_cache_ttl_s"] = 0.2
    path = write_config(tmp_path / "yourouter.yaml", config)

    created = yourouter("keys", "create", "--name", "ci-bot", "--models", "gpt-4o-mini,gpt-4o", "--config", str(path))
    assert created.returncode == 0, created.stderr
    key = re.search(r"key:\s+(sk-yr-\S+)", created.stdout).group(1)
    key_id = re.search(r"id:\s+(key_\w+)", created.stdout).group(1)

    listed = yourouter("keys", "list", "--config", str(path))
    assert listed.returncode == 0 and key_id in listed.stdout and "ci-bot" in listed.stdout
    assert key not in listed.stdout

    with start_gateway(settings_from_mapping(config, env={})) as gateway:
        client = gateway.client(key=key)
        assert client.chat.completions.create(model="gpt-4o", messages=USER).choices
        revoked = yourouter("keys", "revoke", key_id, "--config", str(path))
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        time.sleep(0.3)  # another process revoked it: the gateway notices within key_cache_ttl_s
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o", messages=USER)
    assert yourouter("keys", "revoke", "key_missing", "--config", str(path)).returncode == 1


def test_admin_api_attributes_update_rotate(gateway: GatewayHandle) -> None:
    created = _admin(gateway, "POST", "/admin/keys", {
        "name": "team-b", "models": ["gpt-4o-mini"], "vendors": ["OpenAI"], "rpm": 100, "tpm": 50_000,
        "max_concurrency": 4, "budget_usd": 12.5, "budget_period": "month", "metadata": {"team": "b"},
        "expires_at": "2099-01-01T00:00:00Z"})
    assert created.status == 201, created.body
    body = created.json()
    assert body["vendors"] == ["openai"] and body["rpm"] == 100 and body["budget_usd"] == 12.5
    assert body["budget_period"] == "month" and body["metadata"] == {"team": "b"}
    assert body["expires_at"].startswith("2099-01-01")
    key, key_id = body["key"], body["id"]
    client = gateway.client(key=key)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices  # served by openai (sim-a)

    bad = _admin(gateway, "PATCH", f"/admin/keys/{key_id}", {"rpm": 0})
    assert bad.status == 400 and bad.json()["error"]["param"] == "rpm"
    assert _admin(gateway, "PATCH", f"/admin/keys/{key_id}", {"budget_period": "week"}).status == 400
    assert _admin(gateway, "PATCH", f"/admin/keys/{key_id}", {"colour": "red"}).status == 400
    changed = _admin(gateway, "PATCH", f"/admin/keys/{key_id}", {"rpm": None, "name": "team-b2"})
    assert changed.status == 200 and changed.json()["rpm"] is None and changed.json()["name"] == "team-b2"
    assert changed.json()["tpm"] == 50_000  # untouched fields stay

    disabled = _admin(gateway, "PATCH", f"/admin/keys/{key_id}", {"disabled": True})
    assert disabled.json()["status"] == "disabled"
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert refused.value.code == "key_disabled"
    _admin(gateway, "PATCH", f"/admin/keys/{key_id}", {"disabled": False})

    rotated = _admin(gateway, "POST", f"/admin/keys/{key_id}/rotate")
    assert rotated.status == 200 and rotated.json()["id"] == key_id and rotated.json()["tpm"] == 50_000
    new_key = rotated.json()["key"]
    assert new_key != key and rotated.json()["key_prefix"] == new_key[:10]
    with pytest.raises(openai.AuthenticationError):  # the old secret stops working at once here
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert gateway.client(key=new_key).chat.completions.create(model="gpt-4o-mini", messages=USER).choices
    assert _admin(gateway, "POST", "/admin/keys/key_nope/rotate").status == 404
    assert _admin(gateway, "PATCH", "/admin/keys/key_nope", {"rpm": 5}).status == 404


def test_vendor_restricted_and_expired_keys(gateway: GatewayHandle) -> None:
    azure_only = _admin(gateway, "POST", "/admin/keys", {"name": "azure-only", "vendors": ["azure"]}).json()["key"]
    client = gateway.client(key=azure_only)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    assert raw.headers["x-yourouter-vendor"] == "azure"  # sim-a (openai) is skipped though it comes first
    with pytest.raises(openai.AuthenticationError) as pinned:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER, extra_headers={"vendor": "openai"})
    assert pinned.value.code == "vendor_not_allowed"
    with pytest.raises(openai.AuthenticationError):  # only openai serves gpt-4o
        client.chat.completions.create(model="gpt-4o", messages=USER)
    listed = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in listed and "gpt-4o" not in listed and "only-b" in listed

    expired = _admin(gateway, "POST", "/admin/keys", {"name": "old", "expires_at": "2020-01-01T00:00:00"}).json()
    with pytest.raises(openai.AuthenticationError) as refused:
        gateway.client(key=expired["key"]).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert refused.value.code == "key_expired"


def test_static_keys_take_the_same_attributes(sim_a: str, sim_b: str, tmp_path: Path) -> None:
    config = gateway_config(sim_a, sim_b, f"sqlite:///{tmp_path / 'static.db'}")
    config["keys"] = [
        {"key": "sk-static-vendor-0001", "name": "only-azure", "vendors": ["azure"], "rpm": 10, "budget_usd": 5,
         "budget_period": "day", "metadata": {"owner": "ci"}},
        {"key": "sk-static-off-00001", "name": "off", "disabled": True},
    ]
    with start_gateway(settings_from_mapping(config, env={})) as gateway:
        raw = gateway.client(key="sk-static-vendor-0001").chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=USER)
        assert raw.headers["x-yourouter-vendor"] == "azure"
        with pytest.raises(openai.AuthenticationError):
            gateway.client(key="sk-static-off-00001").chat.completions.create(model="gpt-4o-mini", messages=USER)


def test_cli_keys_update_and_rotate(sim_a: str, sim_b: str, tmp_path: Path) -> None:
    config = gateway_config(sim_a, sim_b, f"sqlite:///{tmp_path / 'cli2.db'}")
    path = write_config(tmp_path / "yourouter.yaml", config)
    created = yourouter("keys", "create", "--name", "bot", "--rpm", "5", "--budget-usd", "2.5",
                        "--budget-period", "day", "--vendors", "openai,AWS", "--config", str(path))
    assert created.returncode == 0, created.stderr
    key_id = re.search(r"id:\s+(key_\w+)", created.stdout).group(1)
    assert re.search(r"vendors:\s+openai,aws", created.stdout)
    updated = yourouter("keys", "update", key_id, "--tpm", "1000", "--rpm", "0", "--disabled", "--config", str(path))
    assert updated.returncode == 0, updated.stderr
    assert re.search(r"tpm:\s+1000", updated.stdout) and "rpm:" not in updated.stdout
    assert re.search(r"status:\s+disabled", updated.stdout)
    rotated = yourouter("keys", "rotate", key_id, "--config", str(path))
    assert rotated.returncode == 0 and re.search(r"key:\s+sk-yr-", rotated.stdout)
    assert yourouter("keys", "update", key_id, "--budget-period", "week", "--config", str(path)).returncode == 2
    listed = yourouter("keys", "list", "--config", str(path))
    assert "$2.5/day" in listed.stdout and "disabled" in listed.stdout
