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
