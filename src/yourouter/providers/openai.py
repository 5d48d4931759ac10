"""`type: openai`: OpenAI's API and every vendor that speaks it (base URL as the OpenAI SDK takes it)."""

from __future__ import annotations

from yourouter.config.schema import ProviderConfig

_PATHS = {"chat.completions": "/chat/completions", "embeddings": "/embeddings", "models": "/models"}


class OpenAIProvider:
    dialect = "openai"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._urls = {endpoint: config.base_url + path for endpoint, path in _PATHS.items()}
        self._headers = {"Content-Type": "application/json", "User-Agent": "yourouter"}
        if config.api_key:
            self._headers["Authorization"] = "Bearer " + config.api_key

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def vendor(self) -> str:
        return self.config.vendor

    def url(self, endpoint: str) -> str:
        return self._urls[endpoint]

    def headers(self) -> dict[str, str]:
        return self._headers

    def supports(self, endpoint: str) -> bool:
        return endpoint in self._urls
