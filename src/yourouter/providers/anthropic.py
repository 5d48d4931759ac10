"""`type: anthropic`: the Anthropic Messages API (base URL as the Anthropic SDK takes it, without `/v1`)."""

from __future__ import annotations

from yourouter.config.schema import ProviderConfig
from yourouter.providers.base import CHAT, COUNT_TOKENS

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider:
    dialect = "anthropic"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        base = config.base_url.removesuffix("/v1")
        self._urls = {CHAT: base + "/v1/messages", COUNT_TOKENS: base + "/v1/messages/count_tokens"}
        self._headers = {"Content-Type": "application/json", "User-Agent": "yourouter",
                         "anthropic-version": ANTHROPIC_VERSION}
        if config.api_key:
            self._headers["x-api-key"] = config.api_key

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
