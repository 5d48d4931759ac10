"""Deterministic Gemini replies: planning a reply for a validated request, then rendering it as one
`GenerateContentResponse` or as the chunk sequence of `streamGenerateContent`; plus token counts, embeddings and
model entries.

Pure functions over normalised (camelCase) request bodies. Wording and token heuristics are shared with the OpenAI
simulator, so a gateway test can assert one reply string whichever upstream answered.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._openai_chat import Directives, estimate_tokens, random_id, split_text, strip_directives
from ._openai_embeddings import embedding_vector
from .schema_fill import example_from_schema

ECHO_LIMIT = 200  # characters of the user's text echoed back, as in the OpenAI simulator
MEDIA_TOKENS = 258  # what Gemini bills per image (or per second of other media, roughly)


@dataclass(frozen=True)
class Candidate:
    index: int
    parts: tuple[dict[str, Any], ...]
    finish_reason: str
    thought_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class GeminiReply:
    response_id: str
    model: str
    candidates: tuple[Candidate, ...]
    prompt_tokens: int
    create_time: str | None = None  # set for Vertex paths, which add `createTime` and `usageMetadata.trafficType`

    @property
    def vertex(self) -> bool:
        return self.create_time is not None

    def usage(self) -> dict[str, Any]:
        output = sum(candidate.output_tokens for candidate in self.candidates)
        thoughts = sum(candidate.thought_tokens for candidate in self.candidates)
        usage: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": self.prompt_tokens + output + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}],
        }
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if self.vertex:
            usage["trafficType"] = "ON_DEMAND"
        return usage


def content_text(content: Mapping[str, Any]) -> tuple[str, int]:
    """Text of a content's text parts (thoughts excluded) and how many image parts it has."""
    texts = [part["text"] for part in content.get("parts") or [] if "text" in part and not part.get("thought")]
    images = 0
    for part in content.get("parts") or []:
        media = part.get("inlineData") or part.get("fileData") or {}
        if str(media.get("mimeType", "")).startswith("image/"):
            images += 1
    return " ".join(texts), images


def _is_user(content: Mapping[str, Any]) -> bool:
    return content.get("role") in (None, "", "user")


def _responses(content: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [part["functionResponse"] for part in content["parts"] if part.get("functionResponse") is not None]


def directive_text(body: Mapping[str, Any]) -> str:
    """Where `[sim:...]` directives are read: the last content, when it is a user turn."""
    last = body["contents"][-1]
    return content_text(last)[0] if _is_user(last) else ""


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """Same rule of thumb as the OpenAI simulator (4 characters a token), with Gemini's flat media cost."""
    total = 0
    contents = list(body["contents"])
    if body.get("systemInstruction"):
        contents.append(body["systemInstruction"])
    for content in contents:
        text, _ = content_text(content)
        total += estimate_tokens(text)
        for part in content.get("parts") or []:
            if part.get("inlineData") or part.get("fileData"):
                total += MEDIA_TOKENS
            for key in ("functionCall", "functionResponse"):
                if part.get(key) is not None:
                    total += estimate_tokens(orjson.dumps(part[key]).decode())
    if body.get("tools"):
        total += estimate_tokens(orjson.dumps(body["tools"]).decode())
    return max(total, 1)


def google_schema_to_json_schema(schema: object) -> Any:
    """Google's OpenAPI-subset Schema (UPPERCASE types, snake or camel keys) as the JSON Schema `schema_fill` reads."""
    if isinstance(schema, list):
        return [google_schema_to_json_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        name = key if key == "properties" else _camel(key)
        if name == "type" and isinstance(value, str):
            result["type"] = value.lower()
        elif name == "properties" and isinstance(value, Mapping):
            result["properties"] = {prop: google_schema_to_json_schema(sub) for prop, sub in value.items()}
        elif name in ("items", "anyOf"):
            result[name] = google_schema_to_json_schema(value)
        else:
            result[name] = value
    return result


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _declarations(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [decl for tool in body.get("tools") or [] for decl in tool.get("functionDeclarations") or []]


def _calling_config(body: Mapping[str, Any]) -> tuple[str, list[str] | None]:
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode = str(calling.get("mode") or "AUTO").upper()
    return ("AUTO" if mode == "MODE_UNSPECIFIED" else mode), calling.get("allowedFunctionNames")


def _wants_call(body: Mapping[str, Any], directives: Directives) -> bool:
    mode, _ = _calling_config(body)
    if not _declarations(body) or mode == "NONE":
        return False
    if mode in ("ANY", "VALIDATED"):
        return True
    last = body["contents"][-1]
    return _is_user(last) and not _responses(last) and directives.reply is None


def _function_calls(body: Mapping[str, Any], directives: Directives, model: str) -> list[dict[str, Any]]:
    declarations = _declarations(body)
    _, allowed = _calling_config(body)
    if allowed:
        declarations = [decl for decl in declarations if decl["name"] in allowed] or declarations
    parts: list[dict[str, Any]] = []
    for position in range(max(1, directives.tool_calls)):
        declaration = declarations[position % len(declarations)]
        if declaration.get("parametersJsonSchema") is not None:
            schema = declaration["parametersJsonSchema"]
        else:
            schema = google_schema_to_json_schema(declaration.get("parameters"))
        args = example_from_schema(schema)
        part: dict[str, Any] = {"functionCall": {"name": declaration["name"], "args": args}}
        if model.startswith("gemini-3") and position == 0:
            # Gemini 3 signs the first call of a step; clients must send the signature back on the next request.
            seed = f"{model}|{declaration['name']}|{orjson.dumps(args).decode()}".encode()
            part["thoughtSignature"] = base64.b64encode(hashlib.sha256(seed).digest()).decode()
        parts.append(part)
    return parts


def _reply_text(body: Mapping[str, Any], directives: Directives, index: int) -> str:
    if directives.reply is not None:
        text = directives.reply
    elif _responses(body["contents"][-1]):
        results = [
            f"{result['name']} returned {orjson.dumps(result['response']).decode()[:ECHO_LIMIT]}"
            for result in _responses(body["contents"][-1])
        ]
        text = "Based on the tool results: " + "; ".join(results) + "."
    else:
        said, images = _last_user_text(body["contents"])
        said = strip_directives(said)[:ECHO_LIMIT]
        text = "Hello from the simulator."
        if said:
            text += f" You said: {said}"
        if images:  # same wording as the OpenAI simulator
            text += f" (and {images} image{'s' if images > 1 else ''})"
    config = body.get("generationConfig") or {}
    mime = config.get("responseMimeType")
    if mime == "application/json":
        schema = config.get("responseJsonSchema")
        if schema is None and config.get("responseSchema") is not None:
            schema = google_schema_to_json_schema(config["responseSchema"])
        value = example_from_schema(schema) if schema is not None else {"reply": text}
        return orjson.dumps(value).decode()
    if mime == "text/x.enum":
        options = (config.get("responseSchema") or config.get("responseJsonSchema") or {}).get("enum") or [text]
        return str(options[0])
    return text if index == 0 else f"{text} (choice {index + 1})"


def _last_user_text(contents: list[dict[str, Any]]) -> tuple[str, int]:
    for content in reversed(contents):
        if _is_user(content) and not _responses(content):
            return content_text(content)
    return "", 0


def _cut(text: str, stops: list[str], limit: int | None) -> tuple[str, str]:
    positions = [text.find(stop) for stop in stops if stop and stop in text]
    if positions:
        text = text[: min(positions)]
    if limit is not None and estimate_tokens(text) > limit:
        return text[: limit * 4], "MAX_TOKENS"
    return text, "STOP"


def plan_reply(
    body: Mapping[str, Any],
    model: str,
    directives: Directives,
    rng: random.Random,
    *,
    create_time: str | None = None,
) -> GeminiReply:
    """Decide every candidate's parts, finish reason and token counts for a validated, normalised request."""
    config = body.get("generationConfig") or {}
    limit = config.get("maxOutputTokens")
    stops = list(config.get("stopSequences") or [])
    thinking = (config.get("thinkingConfig") or {}).get("includeThoughts") is True
    candidates: list[Candidate] = []
    for index in range(config.get("candidateCount") or 1):
        parts: list[dict[str, Any]] = []
        thought_tokens = 0
        if thinking:
            said = strip_directives(_last_user_text(body["contents"])[0])[:ECHO_LIMIT]
            thought = f"**Considering the request**\n\nThe user said: {said or '(nothing)'}. A friendly echo will do."
            parts.append({"text": thought, "thought": True})
            thought_tokens = estimate_tokens(thought)
        if _wants_call(body, directives):
            calls = _function_calls(body, directives, model)
            tokens = sum(estimate_tokens(orjson.dumps(call["functionCall"]).decode()) for call in calls)
            if limit is not None and tokens > limit:  # a truncated call is dropped, as Gemini does
                candidates.append(Candidate(index, tuple(parts), "MAX_TOKENS", thought_tokens, limit))
                continue
            candidates.append(Candidate(index, (*parts, *calls), "STOP", thought_tokens, tokens))
            continue
        text, finish = _cut(_reply_text(body, directives, index), stops, limit)
        parts.append({"text": text})
        candidates.append(Candidate(index, tuple(parts), finish, thought_tokens, estimate_tokens(text)))
    return GeminiReply(
        response_id=random_id(rng, "", 22),
        model=model,
        candidates=tuple(candidates),
        prompt_tokens=prompt_tokens(body),
        create_time=create_time,
    )


def _candidate(index: int, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    content: dict[str, Any] = {"role": "model"}
    if parts:
        content["parts"] = parts
    candidate: dict[str, Any] = {"content": content}
    if finish is not None:
        candidate["finishReason"] = finish
    candidate["index"] = index
    return candidate


def _envelope(reply: GeminiReply, candidates: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"candidates": candidates, "usageMetadata": usage, "modelVersion": reply.model}
    if reply.create_time is not None:
        payload["createTime"] = reply.create_time
    payload["responseId"] = reply.response_id
    return payload


def render_response(reply: GeminiReply) -> dict[str, Any]:
    candidates = [_candidate(c.index, list(c.parts), c.finish_reason) for c in reply.candidates]
    return _envelope(reply, candidates, reply.usage())


def render_chunks(reply: GeminiReply) -> list[dict[str, Any]]:
    """The `GenerateContentResponse` chunks of a stream: text split into deltas, a thought and every function call
    whole in their own chunk, candidates interleaved round-robin; each candidate's last chunk carries its finish
    reason, and the stream's last chunk the final usage (earlier chunks carry the prompt count only)."""
    lanes: list[list[dict[str, Any]]] = []
    for candidate in reply.candidates:
        pieces: list[list[dict[str, Any]]] = []
        calls = [part for part in candidate.parts if "functionCall" in part]
        for part in candidate.parts:
            if "functionCall" in part:
                continue
            if part.get("thought"):
                pieces.append([part])
            else:
                pieces.extend([{"text": piece}] for piece in split_text(part["text"]) or [""])
        if calls:
            pieces.append(calls)
        if not pieces:
            pieces.append([])
        last = len(pieces) - 1
        lanes.append(
            [
                _candidate(candidate.index, piece, candidate.finish_reason if position == last else None)
                for position, piece in enumerate(pieces)
            ]
        )
    ordered = [lane[step] for step in range(max(len(lane) for lane in lanes)) for lane in lanes if step < len(lane)]
    running: dict[str, Any] = {"promptTokenCount": reply.prompt_tokens, "totalTokenCount": reply.prompt_tokens}
    if reply.vertex:
        running["trafficType"] = "ON_DEMAND"
    chunks = [_envelope(reply, [candidate], dict(running)) for candidate in ordered]
    chunks[-1]["usageMetadata"] = reply.usage()
    return chunks


def render_embedding(texts: list[str], dimensions: int) -> list[dict[str, Any]]:
    """`ContentEmbedding` objects; vectors are the OpenAI simulator's (deterministic, unit length)."""
    return [{"values": embedding_vector(text, dimensions)} for text in texts]


def embed_text(request: Mapping[str, Any]) -> str:
    return content_text(request["content"])[0]


def model_entry(model_id: str, prefix: str = "models/") -> dict[str, Any]:
    """A `Model` resource as `GET /{version}/models` lists it."""
    embedding = "embedding" in model_id
    methods = (
        ["embedContent", "batchEmbedContents", "countTextTokens"]
        if embedding
        else ["generateContent", "streamGenerateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
    )
    entry: dict[str, Any] = {
        "name": f"{prefix}{model_id}",
        "version": "001",
        "displayName": " ".join(word.capitalize() for word in model_id.replace("-", " ").split()),
        "description": f"Simulated {model_id}.",
        "inputTokenLimit": 2048 if embedding else 1_048_576,
        "outputTokenLimit": 1 if embedding else 65_536,
        "supportedGenerationMethods": methods,
    }
    if not embedding:
        entry.update({"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": True})
    return entry
