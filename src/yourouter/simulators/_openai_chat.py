"""Deterministic chat replies for the OpenAI simulator: planning a reply, then rendering it as a
`chat.completion` object or as the `chat.completion.chunk` sequence of a stream.

Pure functions over validated request bodies; the only randomness (ids) comes from the caller's `random.Random`.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .schema_fill import example_from_schema

SYSTEM_FINGERPRINT = "fp_sim0000001"
_ID_ALPHABET = string.ascii_letters + string.digits
_DIRECTIVE = re.compile(r"\[sim:([a-z_]+)(?:=([^\]]*))?\]")
_WORD_PIECE = re.compile(r"\S+\s*|\s+")
_ECHO_LIMIT = 200
_IMAGE_TOKENS = 85


@dataclass(frozen=True)
class Directives:
    """Per-request instructions embedded in the last user message, e.g. `[sim:status=429]`."""

    status: int | None = None
    retry_after: float | None = None
    delay_ms: float = 0
    disconnect: bool = False
    midstream_disconnect: int | None = None
    midstream_error: int | None = None
    reply: str | None = None
    tool_calls: int = 1


def parse_directives(text: str) -> Directives:
    """Parse `[sim:name=value]` / `[sim:name]` tokens; unknown names and malformed numbers are ignored."""
    values: dict[str, Any] = {}
    for name, raw in _DIRECTIVE.findall(text):
        if name in ("disconnect",):
            values[name] = True
        elif name == "reply":
            values[name] = raw
        elif name in ("status", "midstream_disconnect", "midstream_error", "tool_calls") and raw.isdigit():
            values[name] = int(raw)
        elif name in ("retry_after", "delay_ms"):
            try:
                values[name] = float(raw)
            except ValueError:
                continue
    return Directives(**values)


def strip_directives(text: str) -> str:
    return " ".join(_DIRECTIVE.sub(" ", text).split())


def estimate_tokens(text: str) -> int:
    """Roughly four characters per token, like OpenAI's rule of thumb."""
    return math.ceil(len(text) / 4)


def random_id(rng: random.Random, prefix: str, length: int = 24) -> str:
    return prefix + "".join(rng.choice(_ID_ALPHABET) for _ in range(length))


def content_text(content: object) -> tuple[str, int]:
    """Text of a message's content (string or parts) and the number of image parts."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts = [
        part.get("text") or part.get("refusal") or "" for part in content if part.get("type") in ("text", "refusal")
    ]
    images = sum(1 for part in content if part.get("type") == "image_url")
    return " ".join(texts), images


def last_user_text(messages: list[dict[str, Any]]) -> tuple[str, int]:
    for message in reversed(messages):
        if message["role"] == "user":
            return content_text(message.get("content"))
    return "", 0


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Choice:
    index: int
    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str


@dataclass(frozen=True)
class ChatReply:
    id: str
    created: int
    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


def plan_reply(body: Mapping[str, Any], directives: Directives, rng: random.Random, created: int) -> ChatReply:
    """Decide the full reply (text or tool calls per choice, finish reasons, token counts) for a valid request."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    stops = body.get("stop")
    stop_list = [stops] if isinstance(stops, str) else list(stops or [])
    choices: list[Choice] = []
    for index in range(body.get("n") or 1):
        if _wants_tool_call(body, directives):
            calls, truncated = _tool_calls(body, directives, rng, limit)
            choices.append(Choice(index, None, calls, "length" if truncated else "tool_calls"))
        else:
            text, finish = _finish_text(_reply_text(body, directives, index), stop_list, limit)
            choices.append(Choice(index, text, (), finish))
    completion_tokens = sum(
        estimate_tokens(choice.content or "") + sum(estimate_tokens(c.name + c.arguments) for c in choice.tool_calls)
        for choice in choices
    )
    return ChatReply(
        id=random_id(rng, "chatcmpl-", 29),
        created=created,
        model=body["model"],
        choices=tuple(choices),
        prompt_tokens=_prompt_tokens(body),
        completion_tokens=completion_tokens,
    )


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    total = 3
    for message in body["messages"]:
        text, images = content_text(message.get("content"))
        total += 3 + estimate_tokens(text) + _IMAGE_TOKENS * images
        for call in message.get("tool_calls") or []:
            total += estimate_tokens(call["function"]["name"] + call["function"]["arguments"])
    if body.get("tools"):
        total += estimate_tokens(orjson.dumps(body["tools"]).decode())
    return total


def _wants_tool_call(body: Mapping[str, Any], directives: Directives) -> bool:
    choice = body.get("tool_choice")
    if not body.get("tools") or choice == "none":
        return False
    if choice == "required" or isinstance(choice, dict):
        return True
    return body["messages"][-1]["role"] == "user" and directives.reply is None


def _tool_calls(
    body: Mapping[str, Any], directives: Directives, rng: random.Random, limit: int | None
) -> tuple[tuple[ToolCall, ...], bool]:
    functions = [tool["function"] for tool in body["tools"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        chosen = [f for f in functions if f["name"] == choice["function"]["name"]]
    elif body.get("parallel_tool_calls") is False:
        chosen = functions[:1]
    else:
        chosen = [functions[i % len(functions)] for i in range(max(1, directives.tool_calls))]
    calls: list[ToolCall] = []
    truncated = False
    for function in chosen:
        arguments = orjson.dumps(example_from_schema(function.get("parameters"))).decode()
        if limit is not None and estimate_tokens(arguments) > limit:
            arguments, truncated = arguments[: limit * 4], True
        calls.append(ToolCall(random_id(rng, "call_"), function["name"], arguments))
    return tuple(calls), truncated


def _reply_text(body: Mapping[str, Any], directives: Directives, index: int) -> str:
    if directives.reply is not None:
        return directives.reply
    messages: list[dict[str, Any]] = body["messages"]
    if messages[-1]["role"] == "tool":
        text = _tool_summary(messages)
    else:
        said, images = last_user_text(messages)
        said = strip_directives(said)[:_ECHO_LIMIT]
        text = "Hello from the simulator."
        if said:
            text += f" You said: {said}"
        if images:
            text += f" (and {images} image{'s' if images > 1 else ''})"
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return orjson.dumps(example_from_schema(response_format["json_schema"].get("schema"))).decode()
    if response_format.get("type") == "json_object":
        return orjson.dumps({"reply": text}).decode()
    return text if index == 0 else f"{text} (choice {index + 1})"


def _tool_summary(messages: list[dict[str, Any]]) -> str:
    names = {
        call["id"]: call["function"]["name"]
        for message in messages
        if message["role"] == "assistant"
        for call in message.get("tool_calls") or []
    }
    results: list[str] = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        text, _ = content_text(message.get("content"))
        results.append(f"{names.get(message['tool_call_id'], 'tool')} returned {text[:_ECHO_LIMIT]}")
    return "Based on the tool results: " + "; ".join(reversed(results)) + "."


def _finish_text(text: str, stops: list[str], limit: int | None) -> tuple[str, str]:
    positions = [text.find(stop) for stop in stops if stop and stop in text]
    if positions:
        text = text[: min(positions)]
    if limit is not None and estimate_tokens(text) > limit:
        return text[: limit * 4], "length"
    return text, "stop"


def render_completion(reply: ChatReply) -> dict[str, Any]:
    choices = []
    for choice in reply.choices:
        message: dict[str, Any] = {"role": "assistant", "content": choice.content, "refusal": None}
        if choice.tool_calls:
            message["tool_calls"] = [
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                for call in choice.tool_calls
            ]
        choices.append(
            {"index": choice.index, "message": message, "logprobs": None, "finish_reason": choice.finish_reason}
        )
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
        "usage": reply.usage(),
    }


def split_text(text: str) -> list[str]:
    """Word-by-word pieces (at least three when the text has three characters) that concatenate back to `text`."""
    pieces = _WORD_PIECE.findall(text)
    return pieces if len(pieces) >= 3 else split_fragments(text, 3)


def split_fragments(text: str, parts: int) -> list[str]:
    if not text:
        return []
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def render_chunks(reply: ChatReply, include_usage: bool) -> list[dict[str, Any]]:
    """All `chat.completion.chunk` payloads of a stream, in order (choices interleave round-robin)."""

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if include_usage:
            payload["usage"] = None
        return payload

    def delta(index: int, body: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk([{"index": index, "delta": body, "logprobs": None, "finish_reason": finish}])

    lanes = [[delta(choice.index, body) for body in _choice_deltas(choice)] for choice in reply.choices]
    chunks = [lane[0] for lane in lanes]
    for step in range(1, max(len(lane) for lane in lanes)):
        chunks.extend(lane[step] for lane in lanes if step < len(lane))
    chunks.extend(delta(choice.index, {}, choice.finish_reason) for choice in reply.choices)
    if include_usage:
        chunks.append({**chunk([]), "usage": reply.usage()})
    return chunks


def _choice_deltas(choice: Choice) -> list[dict[str, Any]]:
    if not choice.tool_calls:
        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        return [first, *({"content": piece} for piece in split_text(choice.content or ""))]
    deltas: list[dict[str, Any]] = []
    for position, call in enumerate(choice.tool_calls):
        header = {
            "index": position,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        if position == 0:
            deltas.append({"role": "assistant", "content": None, "tool_calls": [header], "refusal": None})
        else:
            deltas.append({"tool_calls": [header]})
        for fragment in split_fragments(call.arguments, 3):
            deltas.append({"tool_calls": [{"index": position, "function": {"arguments": fragment}}]})
    return deltas
