"""`type: google`: the Gemini API (`generativelanguage.googleapis.com`, `v1beta` paths, key in `x-goog-api-key`)."""

from __future__ import annotations

from urllib.parse import quote

from yourouter.config.schema import ProviderConfig
from yourouter.providers.base import CHAT, COUNT_TOKENS, EMBEDDINGS, HttpProvider

_METHODS = {COUNT_TOKENS: ":countTokens", EMBEDDINGS: ":batchEmbedContents"}


class GoogleProvider(HttpProvider):
    dialect = "gemini"

    def __init__(self, config: ProviderConfig) -> None:
        base = config.base_url
        # Accept the base URL with or without the API version, as the google-genai SDK takes it.
        if not base.rsplit("/", 1)[-1].startswith("v1"):
            base += "/v1beta"
        self._base = base
        headers = {"x-goog-api-key": config.api_key} if config.api_key else {}
        super().__init__(config, {}, headers)

    def url(self, operation: str, model: str, stream: bool) -> str:
        prefix = f"{self._base}/models/{quote(model, safe='.-_')}"
        if operation == CHAT:
            return prefix + (":streamGenerateContent?alt=sse" if stream else ":generateContent")
        return prefix + _METHODS[operation]

    def supports(self, operation: str) -> bool:
        return operation in (CHAT, EMBEDDINGS, COUNT_TOKENS)
