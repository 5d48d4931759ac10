"""Provider type name -> adapter class. Adding an upstream protocol adds one line here."""

from __future__ import annotations

from collections.abc import Callable

from yourouter.config.schema import ProviderConfig
from yourouter.providers.anthropic import AnthropicProvider
from yourouter.providers.ark import ArkProvider
from yourouter.providers.azure import AzureOpenAIProvider
from yourouter.providers.base import Provider
from yourouter.providers.bedrock import BedrockProvider
from yourouter.providers.google import GoogleProvider
from yourouter.providers.openai import OpenAIProvider
from yourouter.providers.search import BraveProvider, GoogleSearchProvider, SearxngProvider

ADAPTERS: dict[str, Callable[[ProviderConfig], Provider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "google": GoogleProvider,
    "azure": AzureOpenAIProvider,
    "bedrock": BedrockProvider,
    "ark": ArkProvider,
    "google-search": GoogleSearchProvider,
    "brave": BraveProvider,
    "searxng": SearxngProvider,
}


def build_provider(config: ProviderConfig) -> Provider:
    return ADAPTERS[config.type or "openai"](config)
