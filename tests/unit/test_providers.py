"""Provider adapters: URLs and credentials for each upstream protocol."""

from __future__ import annotations

from yourouter.config import settings_from_mapping
from yourouter.providers.base import CHAT, COUNT_TOKENS, EMBEDDINGS
from yourouter.providers.registry import build_provider


def _provider(entry: dict):  # type: ignore[no-untyped-def]
    return build_provider(settings_from_mapping({"providers": [{"models": ["m"], **entry}]}, env={}).providers[0])


def test_openai_compatible() -> None:
    provider = _provider({"name": "ds", "vendor": "deepseek", "api_key": "sk-1"})
    assert provider.url(CHAT, "m", True) == "https://api.deepseek.com/v1/chat/completions"
    assert provider.headers()["Authorization"] == "Bearer sk-1" and not provider.supports(COUNT_TOKENS)


def test_anthropic() -> None:
    provider = _provider({"name": "a", "vendor": "anthropic", "api_key": "k", "base_url": "https://x.test/v1"})
    assert provider.url(CHAT, "m", False) == "https://x.test/v1/messages"
    assert provider.url(COUNT_TOKENS, "m", False) == "https://x.test/v1/messages/count_tokens"
    assert provider.headers()["x-api-key"] == "k" and provider.headers()["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in provider.headers()


def test_google() -> None:
    provider = _provider({"name": "g", "vendor": "google", "api_key": "k"})
    base = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
    assert provider.url(CHAT, "gemini-2.5-flash", False) == base + ":generateContent"
    assert provider.url(CHAT, "gemini-2.5-flash", True) == base + ":streamGenerateContent?alt=sse"
    assert provider.url(EMBEDDINGS, "gemini-2.5-flash", False) == base + ":batchEmbedContents"
    assert provider.headers()["x-goog-api-key"] == "k"


def test_azure_deployment_urls() -> None:
    provider = _provider({"name": "az", "vendor": "azure", "api_key": "k", "api_version": "2025-01-01",
                          "base_url": "https://res.openai.azure.com",
                          "models": [{"name": "gpt-4o", "upstream": "my-gpt4o"}]})
    assert provider.dialect == "openai" and provider.headers()["api-key"] == "k"
    assert provider.url(CHAT, "my-gpt4o", True) == \
        "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2025-01-01"
    assert provider.url(EMBEDDINGS, "emb", False).endswith("/deployments/emb/embeddings?api-version=2025-01-01")
    assert "Authorization" not in provider.headers()
