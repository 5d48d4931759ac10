"""`type: openai`: OpenAI's API and every vendor that speaks it (base URL as the OpenAI SDK takes it)."""

from __future__ import annotations

from yourouter.config.schema import ProviderConfig
from yourouter.providers.base import CHAT, EMBEDDINGS

_PATHS = {CHAT: "/chat/completions", EMBEDDINGS: "/embeddings"}


class OpenAIProvider:
    dialect = "openai"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._urls = {operation: config.base_url + path for operation, path in _PATHS.items()}
        self._headers = {"Content-Type": "application/json", "User-Agent": "yourouter"}
        if config.api_key:
            self._headers["Authorization"] = "Bearer " + config.api_key

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def vendor(self) -> str:
        return self.config.vendor

    def url(self, operation: str, model: str, stream: bool) -> str:
        return self._urls[operation]

    def headers(self) -> dict[str, str]:
        return self._headers

    def supports(self, operation: str) -> bool:
        return operation in self._urls
