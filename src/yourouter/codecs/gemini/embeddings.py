"""Gemini embedContent / batchEmbedContents <-> IR."""

from __future__ import annotations

from typing import Any

from yourouter.codecs.common import as_dict, as_list
from yourouter.ir.chat import EmbeddingRequest, EmbeddingResponse
from yourouter.ir.errors import bad_request

_FORM = "gemini_form"  # single (embedContent) | batch (batchEmbedContents) | predict (Vertex text-embedding-*)


def _text(content: Any, where: str) -> str:
    parts = as_list(as_dict(content, where).get("parts"), f"{where}.parts")
    texts = [str(p.get("text", "")) for p in parts if isinstance(p, dict) and "text" in p]
    if len(texts) != len(parts):
        raise bad_request(f"{where}.parts: only text can be embedded.", param=f"{where}.parts")
    return " ".join(texts)


def _predict_request(payload: dict[str, Any], model: str) -> EmbeddingRequest:
    instances = as_list(payload.get("instances"), "instances")
    inputs = tuple(str(as_dict(item, f"instances[{i}]").get("content", "")) for i, item in enumerate(instances))
    parameters = payload.get("parameters") or {}
    dims = parameters.get("outputDimensionality") if isinstance(parameters, dict) else None
    return EmbeddingRequest(model=model, inputs=inputs, dimensions=dims if isinstance(dims, int) else None,
                            extra={_FORM: "predict"})


def decode_embeddings_request(payload: dict[str, Any], model: str, form: str = "batch") -> EmbeddingRequest:
    """`embedContent` ({content, outputDimensionality?}), `batchEmbedContents` ({requests: [...]}) or Vertex's
    `predict` ({instances: [{content}], parameters})."""
    if form == "predict":
        return _predict_request(payload, model)
    single = form == "single"
    items = [payload] if single else as_list(payload.get("requests"), "requests")
    if not items:
        raise bad_request("requests: at least one request is required.", param="requests")
    inputs = []
    dimensions = None
    for index, item in enumerate(items):
        where = "content" if single else f"requests[{index}].content"
        item = as_dict(item, where)
        inputs.append(_text(item.get("content"), where))
        config = item.get("embedContentConfig") or item.get("embed_content_config") or {}
        dims = item.get("outputDimensionality") or item.get("output_dimensionality") \
            or config.get("outputDimensionality") or config.get("output_dimensionality")
        if isinstance(dims, int):
            dimensions = dims
    return EmbeddingRequest(model=model, inputs=tuple(inputs), dimensions=dimensions, extra={_FORM: form})


def encode_embeddings_request(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    requests = []
    for text in request.inputs:
        entry: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if request.dimensions is not None:
            entry["outputDimensionality"] = request.dimensions
        requests.append(entry)
    return {"requests": requests}


def decode_embeddings_response(payload: dict[str, Any]) -> EmbeddingResponse:
    if "embedding" in payload:
        vectors = [payload["embedding"]]
    else:
        vectors = payload.get("embeddings") or []
    return EmbeddingResponse(model="", vectors=tuple(tuple(float(x) for x in (v or {}).get("values") or ())
                                                     for v in vectors))


def encode_embeddings_response(response: EmbeddingResponse, request: EmbeddingRequest) -> dict[str, Any]:
    vectors = [{"values": list(vector)} for vector in response.vectors]
    form = request.extra.get(_FORM)
    if form == "single":
        return {"embedding": vectors[0] if vectors else {"values": []}}
    if form == "predict":
        return {"predictions": [{"embeddings": v} for v in vectors]}
    return {"embeddings": vectors}
