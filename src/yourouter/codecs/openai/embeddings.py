"""OpenAI Embeddings <-> IR."""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

from yourouter.codecs.openai.chat import usage_in
from yourouter.ir.chat import EmbeddingRequest, EmbeddingResponse
from yourouter.ir.errors import bad_request
from yourouter.ir.usage import Usage


def decode_embeddings_request(payload: dict[str, Any]) -> EmbeddingRequest:
    raw = payload.get("input")
    if isinstance(raw, str):
        inputs: tuple[str, ...] = (raw,)
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        inputs = tuple(raw)
    else:
        raise bad_request("input: token arrays can only be sent to OpenAI-protocol embedding models.", param="input",
                          code="untranslatable_content")
    encoding: Literal["float", "base64"] = "base64" if payload.get("encoding_format") == "base64" else "float"
    dimensions = payload.get("dimensions")
    return EmbeddingRequest(model=str(payload.get("model")), inputs=inputs,
                            dimensions=dimensions if isinstance(dimensions, int) else None,
                            encoding_format=encoding, user=payload.get("user"))


def encode_embeddings_request(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": list(request.inputs), "encoding_format": "float"}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if request.user:
        body["user"] = request.user
    return body


def _floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, str):  # base64 of little-endian float32
        raw = base64.b64decode(value)
        return struct.unpack(f"<{len(raw) // 4}f", raw)
    return tuple(float(x) for x in value or ())


def decode_embeddings_response(payload: dict[str, Any]) -> EmbeddingResponse:
    items = sorted(payload.get("data") or [], key=lambda item: int(item.get("index") or 0))
    return EmbeddingResponse(model=str(payload.get("model") or ""),
                             vectors=tuple(_floats(item.get("embedding")) for item in items),
                             usage=usage_in(payload.get("usage")))


def encode_embeddings_response(response: EmbeddingResponse, request: EmbeddingRequest) -> dict[str, Any]:
    def vector(values: tuple[float, ...]) -> Any:
        if request.encoding_format == "base64":
            return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        return list(values)

    usage = response.usage or Usage()
    data = [{"object": "embedding", "index": i, "embedding": vector(v)} for i, v in enumerate(response.vectors)]
    return {"object": "list", "model": response.model or request.model, "data": data,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}}
