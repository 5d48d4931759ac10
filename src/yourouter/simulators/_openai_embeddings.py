"""Deterministic embeddings for the OpenAI simulator.

A vector is derived from a SHA-256 stream over the input, rounded to float32 and normalised. Shorter `dimensions`
give the renormalised prefix of a longer vector, the way text-embedding-3 models shorten embeddings.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Mapping
from typing import Any

import orjson

from ._openai_chat import estimate_tokens
from ._openai_validation import embedding_inputs


def embedding_vector(item: str | list[int], dimensions: int) -> list[float]:
    """Unit-length float32 vector for one input item (text or token ids)."""
    seed = item.encode() if isinstance(item, str) else orjson.dumps(item)
    digest = hashlib.sha256(seed).digest()
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        block = hashlib.sha256(digest + counter.to_bytes(4, "little")).digest()
        raw.extend(value / 2**31 - 1.0 for value in struct.unpack("<8I", block))
        counter += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(value / norm for value in raw))
    return list(struct.unpack(f"<{dimensions}f", packed))


def encode_base64(vector: list[float]) -> str:
    """Base64 of the little-endian float32 array, the packing the official SDKs decode."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def render_embeddings(body: Mapping[str, Any], default_dimensions: int) -> dict[str, Any]:
    """The `list` response for a validated embeddings request."""
    items = embedding_inputs(body["input"])
    dimensions = body.get("dimensions") or default_dimensions
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(item, dimensions)
        data.append(
            {"object": "embedding", "index": index, "embedding": encode_base64(vector) if as_base64 else vector}
        )
    tokens = sum(estimate_tokens(item) if isinstance(item, str) else len(item) for item in items)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
