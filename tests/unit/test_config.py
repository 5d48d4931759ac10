"""Config loading: interpolation, defaults, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from yourouter.config import ConfigError, load_settings, settings_from_env, settings_from_mapping

PROVIDER = {"name": "openai-main", "type": "openai", "base_url": "https://api.openai.com/v1/",
            "api_key": "${OPENAI_API_KEY}", "models": ["gpt-4o"]}


def test_interpolation_and_defaults() -> None:
    settings = settings_from_mapping({"providers": [PROVIDER], "master_key": "${MK:-}",
                                      "database_url": "${DB:-sqlite:///x.db}"}, env={"OPENAI_API_KEY": "sk-1"})
    provider = settings.providers[0]
    assert provider.api_key == "sk-1" and provider.vendor == "openai-main"
    assert provider.base_url == "https://api.openai.com/v1"  # trailing slash dropped
    assert settings.master_key is None and settings.database_url == "sqlite:///x.db"
    assert settings.port == 8080 and settings.max_body_bytes == 20 * 1024 * 1024


def test_vendor_is_lower_cased() -> None:
    settings = settings_from_mapping({"providers": [{**PROVIDER, "vendor": "OpenAI", "api_key": "k"}]}, env={})
    assert settings.providers[0].vendor == "openai"


@pytest.mark.parametrize(("raw", "message"), [
    ({"providers": [PROVIDER]}, "providers[0].api_key: environment variable OPENAI_API_KEY is not set"),
    ({"providers": [{**PROVIDER, "api_key": "k", "type": "smtp"}]}, "providers.0.type"),
    ({"providers": [{**PROVIDER, "api_key": "k", "models": []}]}, "providers.0: models: at least one model"),
    ({"providers": [{**PROVIDER, "api_key": "k"}, {**PROVIDER, "api_key": "k"}]}, "duplicate deployment name"),
    ({"database_url": "mysql://x"}, "database_url: must be a sqlite:/// or postgresql:// URL"),
    ({"surprise": 1}, "surprise: unknown key"),
    ({"keys": [{"key": "short", "name": "x"}]}, "keys.0.key"),
])
def test_errors_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(raw, env={})
    assert message in str(caught.value)


def test_environment_fallback() -> None:
    settings = settings_from_env({"OPENAI_API_KEY": "sk-env", "YOUROUTER_MASTER_KEY": "mk"})
    assert settings.providers[0].api_key == "sk-env" and settings.providers[0].vendor == "openai"
    assert "gpt-4o" in [m.name for m in settings.providers[0].models] and settings.master_key == "mk"
    assert settings_from_env({}).providers == []


def test_file_resolution(tmp_path: Path) -> None:
    path = tmp_path / "yr.yaml"
    path.write_text("port: 9001\n")
    assert load_settings(path, env={}).port == 9001
    assert load_settings(None, env={"YOUROUTER_CONFIG": str(path)}).port == 9001
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml", env={})
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(path, env={})
    path.write_text("port: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path, env={})


def test_vendor_presets_fill_type_and_base_url() -> None:
    settings = settings_from_mapping({"providers": [
        {"name": "claude", "vendor": "anthropic", "api_key": "k", "models": ["claude-sonnet-4-5"]},
        {"name": "deepseek", "api_key": "k", "models": ["deepseek-chat"]},
        {"name": "gemini", "vendor": "Google", "api_key": "k", "models": ["gemini-2.5-flash"]},
        {"name": "local", "vendor": "vllm", "base_url": "http://127.0.0.1:8000/v1", "models": ["llama"]},
    ]}, env={})
    claude, deepseek, gemini, local = settings.providers
    assert (claude.type, claude.base_url) == ("anthropic", "https://api.anthropic.com")
    assert (deepseek.vendor, deepseek.type, deepseek.base_url) == ("deepseek", "openai", "https://api.deepseek.com/v1")
    assert (gemini.vendor, gemini.type) == ("google", "google")
    assert local.type == "openai" and local.base_url == "http://127.0.0.1:8000/v1"
    with pytest.raises(ConfigError, match="base_url is required"):
        settings_from_mapping({"providers": [{"name": "x", "vendor": "vllm", "models": ["m"]}]}, env={})
    with pytest.raises(ConfigError, match="base_url is required"):
        settings_from_mapping({"providers": [{"name": "mystery", "models": ["m"]}]}, env={})
