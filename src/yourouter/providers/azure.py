"""`type: azure`: Azure OpenAI. The OpenAI wire format at deployment URLs
(`{base}/openai/deployments/{deployment}/chat/completions?api-version=...`) with the key in `api-key`.
A model entry's `upstream` name is the Azure deployment name."""

from __future__ import annotations

from urllib.parse import quote

from yourouter.config.schema import ProviderConfig
from yourouter.providers.base import CHAT, EMBEDDINGS, HttpProvider

DEFAULT_API_VERSION = "2024-10-21"
_PATHS = {CHAT: "chat/completions", EMBEDDINGS: "embeddings"}


class AzureOpenAIProvider(HttpProvider):
    dialect = "openai"

    def __init__(self, config: ProviderConfig) -> None:
        headers = {"api-key": config.api_key} if config.api_key else {}
        super().__init__(config, {}, headers)
        self._version = config.api_version or DEFAULT_API_VERSION

    def url(self, operation: str, model: str, stream: bool) -> str:
        return (f"{self.config.base_url}/openai/deployments/{quote(model, safe='.-_')}/{_PATHS[operation]}"
                f"?api-version={self._version}")

    def supports(self, operation: str) -> bool:
        return operation in _PATHS
