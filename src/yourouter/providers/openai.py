"""`type: openai`: OpenAI's API and every vendor that speaks it (base URL as the OpenAI SDK takes it)."""

from __future__ import annotations

from yourouter.config.schema import ProviderConfig
from yourouter.providers.base import CHAT, EMBEDDINGS, HttpProvider


class OpenAIProvider(HttpProvider):
    dialect = "openai"

    def __init__(self, config: ProviderConfig) -> None:
        base = config.base_url
        auth = {"Authorization": "Bearer " + config.api_key} if config.api_key else {}
        super().__init__(config, {CHAT: base + "/chat/completions", EMBEDDINGS: base + "/embeddings"}, auth)
