"""Google Programmable Search (the Custom Search JSON API): the client's own dialect, so the query's parameters go
through as they are (with the gateway's key, and its default `cx` when the client sent none) and the answer comes
back untouched."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from yourouter.codecs.common import object_or_none
from yourouter.providers.base import Provider
from yourouter.search.query import SearchQuery


def _base(provider: Provider) -> str:
    base = provider.config.base_url
    return base if base.endswith("/customsearch/v1") else base + "/customsearch/v1"


def request(query: SearchQuery, provider: Provider) -> tuple[str, dict[str, str]]:
    params = query.params()
    if "cx" not in params and provider.config.cx:
        params["cx"] = provider.config.cx
    if provider.config.api_key:
        params["key"] = provider.config.api_key
    return _base(provider) + "?" + urlencode(params), provider.headers()


def answer(body: bytes, query: SearchQuery) -> dict[str, Any]:
    payload = object_or_none(body)
    if payload is None:
        raise ValueError("not a JSON object")
    return payload


def error_message(body: bytes) -> str | None:
    error = (object_or_none(body) or {}).get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else None
