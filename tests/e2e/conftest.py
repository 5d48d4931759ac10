"""Fixtures for the end-to-end tests: a gateway in front of one simulator of each protocol."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import STATIC_KEY, GatewayHandle, closed_port, start_gateway
from yourouter.config import settings_from_mapping
from yourouter.simulators.anthropic import create_app as anthropic_sim
from yourouter.simulators.background import serve_in_thread
from yourouter.simulators.bedrock import ACCESS_KEY_ID
from yourouter.simulators.bedrock import create_app as bedrock_sim
from yourouter.simulators.gemini import create_app as gemini_sim
from yourouter.simulators.openai import SimulatorSettings
from yourouter.simulators.openai import create_app as openai_sim

UPSTREAM_KEY = "sk-matrix-upstream"
#: Bedrock's id has the `:` that model ids there carry (percent-encoded in the URL and signed so).
MODELS = {"openai": "gpt-sim", "anthropic": "claude-sim", "gemini": "gemini-sim",
          "bedrock": "anthropic.claude-sim-v1:0"}


@pytest.fixture(scope="session")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    settings = SimulatorSettings(api_key=UPSTREAM_KEY)
    with serve_in_thread(openai_sim(settings)) as sim_o, serve_in_thread(anthropic_sim(settings)) as sim_a, \
            serve_in_thread(gemini_sim(settings)) as sim_g, serve_in_thread(bedrock_sim(settings)) as sim_b:
        db: Path = tmp_path_factory.mktemp("matrix") / "gw.db"
        config = {
            "database_url": f"sqlite:///{db}",
            "usage": {"flush_interval_s": 0.05},
            "routing": {"strategy": "ordered", "cooldown_failures": 1000,
                        "fallbacks": {"doomed": ["not-served", MODELS["anthropic"]]}},
            "media": {"allow_private_networks": True},  # the test image server is on 127.0.0.1
            "keys": [{"key": STATIC_KEY, "name": "matrix", "models": ["*"]}],
            "providers": [
                {"name": "up-openai", "vendor": "openai", "type": "openai", "base_url": f"{sim_o}/v1",
                 "api_key": UPSTREAM_KEY, "models": [MODELS["openai"], "oa-embed", "dual"]},
                {"name": "up-anthropic", "vendor": "anthropic", "type": "anthropic", "base_url": sim_a,
                 "api_key": UPSTREAM_KEY, "models": [MODELS["anthropic"], "dual"]},
                {"name": "up-gemini", "vendor": "google", "type": "google", "base_url": sim_g,
                 "api_key": UPSTREAM_KEY, "models": [MODELS["gemini"], "gemini-embed"]},
                {"name": "up-bedrock", "vendor": "aws", "region": "us-west-2", "base_url": sim_b,
                 "aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": UPSTREAM_KEY,
                 "models": [MODELS["bedrock"]]},
                {"name": "up-dead", "vendor": "deadco", "type": "openai", "base_url": f"http://127.0.0.1:{closed_port()}",
                 "api_key": "sk-dead", "models": ["doomed"]},
            ],
        }
        with start_gateway(settings_from_mapping(config, env={}),
                           sims={"openai": sim_o, "anthropic": sim_a, "gemini": sim_g, "bedrock": sim_b}) as gateway:
            yield gateway


