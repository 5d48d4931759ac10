"""Raw YAML file (or the environment) -> validated `Settings`, with `${ENV_VAR}` interpolation."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from yourouter.config.schema import Settings

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

#: Models an OpenAI deployment serves when it comes from environment variables alone.
DEFAULT_OPENAI_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3", "o4-mini",
                         "text-embedding-3-small", "text-embedding-3-large"]

#: The environment variable that carries validated settings (JSON) to `serve --workers N`'s worker processes.
SETTINGS_ENV = "YOUROUTER_SETTINGS_JSON"


class ConfigError(Exception):
    """A configuration problem, phrased for a person: which key, what is wrong."""


def _interpolate(value: Any, path: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{path or '<root>'}: environment variable {name} is not set "
                              f"(write ${{{name}:-}} to make it optional)")
        return _VAR.sub(substitute, value)
    if isinstance(value, list):
        return [_interpolate(item, f"{path}[{i}]", env) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()}
    return value


def _drop_empty_optionals(raw: dict[str, Any]) -> dict[str, Any]:
    # `${VAR:-}` interpolates to "", which for optional secrets means "not set".
    if raw.get("master_key") == "":
        raw["master_key"] = None
    for provider in raw.get("providers") or []:
        if isinstance(provider, dict) and provider.get("api_key") == "":
            provider["api_key"] = None
    return raw


def _format_validation(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{where}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def settings_from_mapping(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Validate an already-parsed config mapping (interpolating `${VAR}` from `env`)."""
    env = os.environ if env is None else env
    resolved = _interpolate(dict(raw), "", env)
    try:
        return Settings.model_validate(_drop_empty_optionals(resolved))
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc)) from None


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings with no config file: providers from the usual provider environment variables."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {"providers": []}
    if env.get("YOUROUTER_DATABASE_URL"):
        raw["database_url"] = env["YOUROUTER_DATABASE_URL"]
    if env.get("YOUROUTER_MASTER_KEY"):
        raw["master_key"] = env["YOUROUTER_MASTER_KEY"]
    if env.get("OPENAI_API_KEY"):
        raw["providers"].append({
            "name": "openai", "vendor": "openai", "type": "openai",
            "base_url": env.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            "api_key": env["OPENAI_API_KEY"], "models": DEFAULT_OPENAI_MODELS,
        })
    return settings_from_mapping(raw, env)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve the config: explicit path, else `$YOUROUTER_CONFIG`, else `./yourouter.yaml`, else the environment."""
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get("YOUROUTER_CONFIG"))
    candidate = Path(path or env.get("YOUROUTER_CONFIG") or "yourouter.yaml")
    if not candidate.exists():
        if explicit:
            raise ConfigError(f"config file {candidate} does not exist")
        return settings_from_env(env)
    try:
        raw = yaml.safe_load(candidate.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{candidate}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{candidate}: cannot read: {exc.strerror}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{candidate}: the top level must be a mapping of keys")
    return settings_from_mapping(raw, env)
