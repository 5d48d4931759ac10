"""Web search upstreams: `type: google-search` (Google Programmable Search, the gateway's own API key and default
`cx`), `type: brave` (Brave Search API, `X-Subscription-Token`) and `type: searxng` (a SearXNG instance's JSON API).
Each speaks its own wire format (`dialect` names the engine in `search/engines/`); all serve the operation
`search`, and a deployment with no `models` serves the model name `search`."""

from __future__ import annotations

from yourouter.config.schema import ProviderConfig
from yourouter.providers.base import SEARCH, HttpProvider


class SearchProvider(HttpProvider):
    def __init__(self, config: ProviderConfig, headers: dict[str, str]) -> None:
        super().__init__(config, {SEARCH: config.base_url}, headers)
        self._headers.pop("Content-Type", None)  # GET requests: no body


class GoogleSearchProvider(SearchProvider):
    dialect = "google-search"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config, {})  # the key travels as Google wants it: the `key` query parameter


class BraveProvider(SearchProvider):
    dialect = "brave"

    def __init__(self, config: ProviderConfig) -> None:
        headers = {"Accept": "application/json"}
        if config.api_key:
            headers["X-Subscription-Token"] = config.api_key
        super().__init__(config, headers)


class SearxngProvider(SearchProvider):
    dialect = "searxng"

    def __init__(self, config: ProviderConfig) -> None:
        headers = {"Accept": "application/json"}
        if config.api_key:  # SearXNG has no auth of its own; a proxy in front of it may want a bearer token
            headers["Authorization"] = "Bearer " + config.api_key
        super().__init__(config, headers)
