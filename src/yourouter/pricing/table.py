"""The shipped price table: vendors' public list prices in USD, compiled 2026-11-29 from the prices the vendors
listed in late 2025 (sources below). They are defaults to be overridden, not a billing record: set `prices:` in
the config (or `price:` on a deployment's model entry) for negotiated, regional, batch or newer prices.

Per 1M tokens: input, output, cached input (a cache read; cache writes and storage are not modelled), and
`per_query` USD for things billed per call. Where a vendor charges more past a prompt length (Gemini 2.5 Pro and
Claude Sonnet 4.5 above 200k tokens, Seed 1.6 above 128k), the table has the base tier. Keys are lower case; a
dated or versioned id (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`, `us.amazon.nova-pro-v1:0`) finds its
undated entry through the lookup rules in `pricing/book.py`, so only ids priced unlike their family are listed.

Sources: platform.openai.com/docs/pricing; docs.anthropic.com (pricing); ai.google.dev/gemini-api/docs/pricing;
api-docs.deepseek.com/quick_start/pricing (DeepSeek-V3.2, from 2025-09-29); mistral.ai/pricing;
docs.x.ai/docs/models; docs.byteplus.com ModelArk pricing (USD list prices of the Seed and Seedance models that
Volcengine Ark sells in CNY); aws.amazon.com/bedrock/pricing (on-demand, us-east-1); groq.com/pricing;
together.ai/pricing; fireworks.ai/pricing; Google Custom Search JSON API ($5 per 1,000 queries); Brave Search API
(Base plan, $5 per 1,000 queries). SearXNG is self-hosted, hence free.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from yourouter.pricing.price import Amount, Price


def _p(input: Amount, output: Amount, cached_input: Amount | None = None) -> Price:
    return Price.of(input, output, cached_input)


_OPENAI: Mapping[str, Price] = {
    "gpt-5": _p(1.25, 10, 0.125),
    "gpt-5.1": _p(1.25, 10, 0.125),
    "gpt-5-chat": _p(1.25, 10, 0.125),  # gpt-5-chat-latest
    "gpt-5-codex": _p(1.25, 10, 0.125),
    "gpt-5-mini": _p(0.25, 2, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-5-pro": _p(15, 120),
    "gpt-4.1": _p(2, 8, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "gpt-4o": _p(2.50, 10, 1.25),
    "gpt-4o-2024-05-13": _p(5, 15),  # the first gpt-4o snapshot kept its launch price
    "chatgpt-4o": _p(5, 15),  # chatgpt-4o-latest
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "o1": _p(15, 60, 7.50),
    "o1-mini": _p(1.10, 4.40, 0.55),
    "o3": _p(2, 8, 0.50),
    "o3-pro": _p(20, 80),
    "o3-mini": _p(1.10, 4.40, 0.55),
    "o4-mini": _p(1.10, 4.40, 0.275),
    "gpt-4-turbo": _p(10, 30),
    "gpt-3.5-turbo": _p(0.50, 1.50),
    "text-embedding-3-small": _p(0.02, 0),
    "text-embedding-3-large": _p(0.13, 0),
    "text-embedding-ada-002": _p(0.10, 0),
}

_ANTHROPIC: Mapping[str, Price] = {
    "claude-opus-4-5": _p(5, 25, 0.50),
    "claude-sonnet-4-5": _p(3, 15, 0.30),
    "claude-haiku-4-5": _p(1, 5, 0.10),
    "claude-opus-4-1": _p(15, 75, 1.50),
    "claude-opus-4": _p(15, 75, 1.50),
    "claude-opus-4-0": _p(15, 75, 1.50),
    "claude-sonnet-4": _p(3, 15, 0.30),
    "claude-sonnet-4-0": _p(3, 15, 0.30),
    "claude-3-7-sonnet": _p(3, 15, 0.30),
    "claude-3-5-sonnet": _p(3, 15, 0.30),
    "claude-3-5-haiku": _p(0.80, 4, 0.08),
    "claude-3-opus": _p(15, 75, 1.50),
    "claude-3-haiku": _p(0.25, 1.25, 0.03),
}

_GOOGLE: Mapping[str, Price] = {
    "gemini-3-pro-preview": _p(2, 12, 0.20),
    "gemini-2.5-pro": _p(1.25, 10, 0.125),
    "gemini-2.5-flash": _p(0.30, 2.50, 0.03),
    "gemini-2.5-flash-lite": _p(0.10, 0.40, 0.01),
    "gemini-2.0-flash": _p(0.10, 0.40, 0.025),
    "gemini-2.0-flash-lite": _p(0.075, 0.30),
    "gemini-embedding-001": _p(0.15, 0),
}

_DEEPSEEK: Mapping[str, Price] = {
    "deepseek-chat": _p(0.28, 0.42, 0.028),
    "deepseek-reasoner": _p(0.28, 0.42, 0.028),
}

_MISTRAL: Mapping[str, Price] = {
    "mistral-large": _p(2, 6),  # mistral-large-2411 (and -latest)
    "mistral-large-2512": _p(0.50, 1.50),  # Mistral Large 3
    "mistral-medium": _p(0.40, 2),
    "mistral-small": _p(0.10, 0.30),
    "magistral-medium": _p(2, 5),
    "magistral-small": _p(0.50, 1.50),
    "codestral": _p(0.30, 0.90),
    "ministral-8b": _p(0.10, 0.10),
    "ministral-3b": _p(0.04, 0.04),
    "mistral-embed": _p(0.10, 0),
}

_XAI: Mapping[str, Price] = {
    "grok-4": _p(3, 15, 0.75),  # grok-4-0709
    "grok-4-fast-reasoning": _p(0.20, 0.50, 0.05),
    "grok-4-fast-non-reasoning": _p(0.20, 0.50, 0.05),
    "grok-code-fast-1": _p(0.20, 1.50, 0.02),
    "grok-3": _p(3, 15, 0.75),
    "grok-3-mini": _p(0.30, 0.50, 0.075),
}

# Volcengine Ark ids (`doubao-…`) and BytePlus ModelArk ids, at BytePlus's USD list prices. Seedance (video)
# bills the completion tokens of the generated clip.
_BYTEDANCE: Mapping[str, Price] = {
    "doubao-seed-1-6": _p(0.25, 2, 0.05),
    "doubao-seed-1-6-thinking": _p(0.25, 2, 0.05),
    "doubao-seed-1-6-flash": _p(0.075, 0.30, 0.015),
    "seed-1-6": _p(0.25, 2, 0.05),
    "seed-1-6-flash": _p(0.075, 0.30, 0.015),
    "doubao-seedance-1-0-pro": _p(0, 2.50),
    "doubao-seedance-1-0-lite-t2v": _p(0, 1.80),
    "doubao-seedance-1-0-lite-i2v": _p(0, 1.80),
    "seedance-1-0-pro": _p(0, 2.50),
    "seedance-1-0-lite-t2v": _p(0, 1.80),
    "seedance-1-0-lite-i2v": _p(0, 1.80),
}

# Bedrock: Claude at Anthropic's list prices under `anthropic.` ids, and Amazon Nova. Regional prefixes (`us.`,
# `eu.`, ...) and the `-v1:0` version are taken off by the lookup.
_BEDROCK: Mapping[str, Price] = {
    **{f"anthropic.{name}": price for name, price in _ANTHROPIC.items()},
    "amazon.nova-premier": _p(2.50, 12.50, 0.625),
    "amazon.nova-pro": _p(0.80, 3.20, 0.20),
    "amazon.nova-lite": _p(0.06, 0.24, 0.015),
    "amazon.nova-micro": _p(0.035, 0.14, 0.00875),
}

# Open models at the hosts that ship them under their own ids.
_HOSTS: Mapping[str, Price] = {
    "llama-3.3-70b-versatile": _p(0.59, 0.79),  # Groq
    "llama-3.1-8b-instant": _p(0.05, 0.08),  # Groq
    "meta-llama/llama-3.3-70b-instruct-turbo": _p(0.88, 0.88),  # Together
    "accounts/fireworks/models/llama-v3p3-70b-instruct": _p(0.90, 0.90),  # Fireworks
}

_SEARCH: Mapping[str, Price] = {
    "google-search": Price.of(per_query=0.005),
    "brave": Price.of(per_query=0.005),
    "searxng": Price(),
}

#: Model (or search provider) name -> list price.
PRICES: Mapping[str, Price] = MappingProxyType({
    **_OPENAI, **_ANTHROPIC, **_GOOGLE, **_DEEPSEEK, **_MISTRAL, **_XAI, **_BYTEDANCE, **_BEDROCK, **_HOSTS,
    **_SEARCH,
})
