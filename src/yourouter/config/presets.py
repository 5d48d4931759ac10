"""Vendor presets: the wire protocol and base URL a deployment gets from its `vendor` when the config leaves them
out. Every OpenAI-compatible vendor is one line here."""

from __future__ import annotations

from typing import NamedTuple


class VendorPreset(NamedTuple):
    type: str
    base_url: str | None  # None: the config must give it (self-hosted servers)


PRESETS: dict[str, VendorPreset] = {
    "openai": VendorPreset("openai", "https://api.openai.com/v1"),
    "azure": VendorPreset("azure", None),  # https://<resource>.openai.azure.com
    "anthropic": VendorPreset("anthropic", "https://api.anthropic.com"),
    "aws": VendorPreset("bedrock", None),  # https://bedrock-runtime.<region>.amazonaws.com, from `region`
    "google": VendorPreset("google", "https://generativelanguage.googleapis.com"),
    "deepseek": VendorPreset("openai", "https://api.deepseek.com/v1"),
    "mistral": VendorPreset("openai", "https://api.mistral.ai/v1"),
    "x": VendorPreset("openai", "https://api.x.ai/v1"),
    "volcengine": VendorPreset("ark", "https://ark.cn-beijing.volces.com/api/v3"),  # chat, embeddings, video
    "byteplus": VendorPreset("ark", "https://ark.ap-southeast.bytepluses.com/api/v3"),
    "groq": VendorPreset("openai", "https://api.groq.com/openai/v1"),
    "together": VendorPreset("openai", "https://api.together.xyz/v1"),
    "openrouter": VendorPreset("openai", "https://openrouter.ai/api/v1"),
    "fireworks": VendorPreset("openai", "https://api.fireworks.ai/inference/v1"),
    "ollama": VendorPreset("openai", "http://localhost:11434/v1"),
    "vllm": VendorPreset("openai", None),
    # web search engines (operation `search`)
    "google-search": VendorPreset("google-search", "https://customsearch.googleapis.com/customsearch/v1"),
    "brave": VendorPreset("brave", "https://api.search.brave.com/res/v1"),
    "searxng": VendorPreset("searxng", None),  # your instance, e.g. http://searxng:8080
}
