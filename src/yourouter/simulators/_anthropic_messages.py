"""Deterministic replies for the Anthropic simulator: plan a reply, then render it as a `message` or as SSE events.

Pure functions over validated request bodies; the only randomness (ids, thinking signatures) comes from the
caller's `random.Random`. Token counts use the OpenAI simulator's heuristic, so both simulators agree.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._anthropic_validation import thinking_enabled
from ._openai_chat import (
    _ECHO_LIMIT,
    _IMAGE_TOKENS,
    Directives,
    estimate_tokens,
    parse_directives,
    random_id,
    split_fragments,
    split_text,
    strip_directives,
)
from .schema_fill import example_from_schema

_SIGNATURE_BYTES = 72


@dataclass(frozen=True)
class Block:
    """One output content block: `text`, `thinking` (text holds the thinking) or `tool_use`."""

    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    input_json: str = ""
    signature: str = ""

    def tokens(self) -> int:
        return estimate_tokens(self.name + self.input_json if self.type == "tool_use" else self.text)

    def opening(self) -> dict[str, Any]:
        """The block as `content_block_start` announces it, before any delta."""
        if self.type == "tool_use":
            return {"type": "tool_use", "id": self.id, "name": self.name, "input": {}}
        if self.type == "thinking":
            return {"type": "thinking", "thinking": "", "signature": ""}
        return {"type": "text", "text": ""}

    def to_json(self) -> dict[str, Any]:
        if self.type == "tool_use":
            return {"type": "tool_use", "id": self.id, "name": self.name, "input": orjson.loads(self.input_json)}
        if self.type == "thinking":
            return {"type": "thinking", "thinking": self.text, "signature": self.signature}
        return {"type": "text", "text": self.text}


@dataclass(frozen=True)
class MessageReply:
    id: str
    model: str
    content: tuple[Block, ...]
    stop_reason: str
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int

    def usage(self, output_tokens: int | None = None) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }


@dataclass(frozen=True)
class Conversation:
    """The parts of a validated request a reply depends on."""

    text: str  # text of the last user turn (consecutive user messages merged), directives included
    images: int
    tool_results: tuple[Mapping[str, Any], ...]  # tool_result blocks of the last user turn
    only_tool_results: bool
    prefill: str | None  # text of a final assistant turn, which the reply continues


def read_conversation(messages: list[dict[str, Any]]) -> Conversation:
    end = len(messages)
    while end and messages[end - 1]["role"] == "assistant":
        end -= 1
    prefill = " ".join(_texts(m["content"]) for m in messages[end:]) if end < len(messages) else None
    start = end
    while start and messages[start - 1]["role"] == "user":
        start -= 1
    blocks = [block for message in messages[start:end] for block in _blocks(message["content"])]
    texts = [block["text"] for block in blocks if block["type"] == "text"]
    results = tuple(block for block in blocks if block["type"] == "tool_result")
    return Conversation(
        text=" ".join(texts),
        images=sum(1 for block in blocks if block["type"] == "image"),
        tool_results=results,
        only_tool_results=bool(results) and len(results) == len(blocks),
        prefill=prefill,
    )


def last_user_directives(body: Mapping[str, Any]) -> Directives:
    """`[sim:...]` directives in the text of the last user turn."""
    return parse_directives(read_conversation(body["messages"]).text)


def _blocks(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def _texts(content: object) -> str:
    return " ".join(block["text"] for block in _blocks(content) if block["type"] == "text")


def greeting(said: str, images: int) -> str:
    """The echo reply; the same wording as the OpenAI simulator, so gateway tests can assert one string."""
    said = strip_directives(said)[:_ECHO_LIMIT]
    text = "Hello from the simulator."
    if said:
        text += f" You said: {said}"
    if images:
        text += f" (and {images} image{'s' if images > 1 else ''})"
    return text


def plan_message(body: Mapping[str, Any], directives: Directives, rng: random.Random) -> MessageReply:
    """Decide the full reply (blocks, stop reason, token counts) for a valid request."""
    messages: list[dict[str, Any]] = body["messages"]
    conversation = read_conversation(messages)
    tools = _tools_to_call(body, conversation, directives)
    blocks: list[Block] = []
    if thinking_enabled(body):
        blocks.append(Block("thinking", text=_thinking(conversation, tools), signature=_signature(rng)))
    if tools:
        choice = body.get("tool_choice") or {"type": "auto"}
        if choice["type"] == "auto":  # forced tool use comes without a preamble, as with the real API
            blocks.append(Block("text", text=_preamble(tools)))
        for tool in tools:
            arguments = orjson.dumps(example_from_schema(tool.get("input_schema"))).decode()
            blocks.append(Block("tool_use", id=random_id(rng, "toolu_01", 22), name=tool["name"], input_json=arguments))
        stop_reason = "tool_use"
    else:
        text = _continue(conversation.prefill, _reply_text(messages, conversation, directives))
        blocks.append(Block("text", text=text))
        stop_reason = "end_turn"
    content, stop_reason, stop_sequence = _apply_limits(
        blocks, stop_reason, list(body.get("stop_sequences") or []), body["max_tokens"]
    )
    return MessageReply(
        id=random_id(rng, "msg_01", 22),
        model=body["model"],
        content=content,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=count_input_tokens(body),
        output_tokens=max(1, sum(block.tokens() for block in content)),
    )


def _tools_to_call(body: Mapping[str, Any], conversation: Conversation, directives: Directives) -> list[dict[str, Any]]:
    client_tools = [tool for tool in body.get("tools") or [] if tool.get("type") in (None, "custom")]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not client_tools or choice["type"] == "none":
        return []
    if choice["type"] == "tool":
        return [tool for tool in client_tools if tool["name"] == choice["name"]]
    if choice["type"] == "auto" and (
        conversation.prefill is not None or conversation.only_tool_results or directives.reply is not None
    ):
        return []
    if choice.get("disable_parallel_tool_use"):
        return client_tools[:1]
    return [client_tools[i % len(client_tools)] for i in range(max(1, directives.tool_calls))]


def _preamble(tools: list[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(tool["name"] for tool in tools))
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    return f"I'll use the {listed} tool{'s' if len(names) > 1 else ''}."


def _reply_text(messages: list[dict[str, Any]], conversation: Conversation, directives: Directives) -> str:
    if directives.reply is not None:
        return directives.reply
    if conversation.tool_results:
        return _tool_summary(messages, conversation.tool_results)
    return greeting(conversation.text, conversation.images)


def _tool_summary(messages: list[dict[str, Any]], results: tuple[Mapping[str, Any], ...]) -> str:
    names = {
        block["id"]: block["name"]
        for message in messages
        if message["role"] == "assistant"
        for block in _blocks(message["content"])
        if block["type"] == "tool_use"
    }
    parts = []
    for result in results:
        content = result.get("content")
        text = content if isinstance(content, str) else _texts(content)
        verb = "failed with" if result.get("is_error") else "returned"
        parts.append(f"{names.get(result['tool_use_id'], 'tool')} {verb} {text[:_ECHO_LIMIT]}")
    return "Based on the tool results: " + "; ".join(parts) + "."


def _continue(prefill: str | None, text: str) -> str:
    """What follows an assistant prefill: the rest of `text` when the prefill is its start, else all of it."""
    if not prefill:
        return text
    return text[len(prefill) :] if text.startswith(prefill) else " " + text


def _thinking(conversation: Conversation, tools: list[dict[str, Any]]) -> str:
    if tools:
        return f"The user needs {tools[0]['name']}; I should call the tool before answering."
    if conversation.tool_results:
        return "The tool results are in; I should summarise them for the user."
    said = strip_directives(conversation.text)[:_ECHO_LIMIT]
    return f'The user said "{said}". I should greet them and repeat it back.'


def _signature(rng: random.Random) -> str:
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(_SIGNATURE_BYTES))).decode()


def _apply_limits(
    blocks: list[Block], stop_reason: str, stops: list[str], limit: int
) -> tuple[tuple[Block, ...], str, str | None]:
    """Cut the planned blocks at the first stop sequence (text only) or where `max_tokens` runs out."""
    kept: list[Block] = []
    remaining = limit
    for block in blocks:
        matched: str | None = None
        text = block.text
        if block.type == "text":
            found = [(text.find(stop), position, stop) for position, stop in enumerate(stops) if stop in text]
            if found:
                cut, _, matched = min(found)
                text = text[:cut]
        if block.type == "tool_use" and block.tokens() > remaining:
            return tuple(kept), "max_tokens", None
        if block.type != "tool_use" and estimate_tokens(text) > remaining:
            text = text[: remaining * 4]
            if text:
                kept.append(Block(block.type, text=text, signature=block.signature))
            return tuple(kept), "max_tokens", None
        if block.type == "tool_use" or text:
            kept.append(Block(block.type, text, block.id, block.name, block.input_json, block.signature))
        remaining -= estimate_tokens(text) if block.type != "tool_use" else block.tokens()
        if matched is not None:
            return tuple(kept), "stop_sequence", matched
    return tuple(kept), stop_reason, None


def count_input_tokens(body: Mapping[str, Any]) -> int:
    """Prompt size: system, messages (85 tokens an image, as in the OpenAI simulator) and tool definitions."""
    system = body.get("system")
    total = 3 + estimate_tokens(system if isinstance(system, str) else _texts(system))
    for message in body["messages"]:
        total += 3 + sum(_block_tokens(block) for block in _blocks(message["content"]))
    if body.get("tools"):
        total += estimate_tokens(orjson.dumps(body["tools"]).decode())
    return total


def _block_tokens(block: Mapping[str, Any]) -> int:
    kind = block["type"]
    if kind == "text":
        return estimate_tokens(block["text"])
    if kind == "tool_use":
        return estimate_tokens(block["name"] + orjson.dumps(block["input"]).decode())
    if kind == "tool_result":
        content = block.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else _blocks(content)
        return sum(_block_tokens(part) for part in parts if part["type"] in ("text", "image"))
    if kind == "thinking":
        return estimate_tokens(block["thinking"])
    if kind == "redacted_thinking":
        return estimate_tokens(block["data"])
    source = block.get("source") or {}
    if kind == "document" and source.get("type") == "text":
        return estimate_tokens(source.get("data") or "")
    return _IMAGE_TOKENS  # images, and documents we cannot read


def render_message(reply: MessageReply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [block.to_json() for block in reply.content],
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": reply.usage(),
    }


def render_events(reply: MessageReply) -> list[tuple[str, dict[str, Any]]]:
    """The stream as (event name, payload) pairs.

    Order: message_start, then per block content_block_start / deltas / content_block_stop (a ping after the first
    start), message_delta with the cumulative usage, message_stop.
    """
    start = {**render_message(reply), "content": [], "stop_reason": None, "stop_sequence": None}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {**start, "usage": reply.usage(output_tokens=1)}})
    ]
    for index, block in enumerate(reply.content):
        opening = {"type": "content_block_start", "index": index, "content_block": block.opening()}
        events.append(("content_block_start", opening))
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            for delta in _deltas(block)
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    if not reply.content:
        events.append(("ping", {"type": "ping"}))
    delta = {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence}
    events.append(
        ("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": reply.output_tokens}})
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _deltas(block: Block) -> list[dict[str, Any]]:
    if block.type == "text":
        return [{"type": "text_delta", "text": piece} for piece in split_text(block.text)]
    if block.type == "thinking":
        pieces = [{"type": "thinking_delta", "thinking": piece} for piece in split_text(block.text)]
        return [*pieces, {"type": "signature_delta", "signature": block.signature}]
    # like the real API: an empty first fragment, then the JSON in pieces
    fragments = ["", *split_fragments(block.input_json, 3)]
    return [{"type": "input_json_delta", "partial_json": fragment} for fragment in fragments]


def named_sse_event(name: str, payload: object) -> bytes:
    """One SSE event with an `event:` line (Anthropic framing): the JSON `type` equals the event name."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
