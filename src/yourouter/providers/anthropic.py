"""`type: anthropic`: the Anthropic Messages API (base URL as the Anthropic SDK takes it, without `/v1`)."""

from __future__ import annotations

from yourouter.config.schema import ProviderConfig
from yourouter.providers.base import CHAT, COUNT_TOKENS, HttpProvider

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(HttpProvider):
    dialect = "anthropic"

    def __init__(self, config: ProviderConfig) -> None:
        base = config.base_url.removesuffix("/v1")
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if config.api_key:
            headers["x-api-key"] = config.api_key
        super().__init__(config, {CHAT: base + "/v1/messages", COUNT_TOKENS: base + "/v1/messages/count_tokens"},
                         headers)
