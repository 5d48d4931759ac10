"""Request validation for the Anthropic simulator, with the Messages API's strictness and error wording.

Every failure raises `RequestError` whose message is `"<field path>: <problem>"` (paths like
`messages.1.content.0.text`, as the real API reports them); the app renders it as an `invalid_request_error`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._openai_validation import FUNCTION_NAME, RequestError

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_CHOICES = ("auto", "any", "tool", "none")
MIN_THINKING_BUDGET = 1024
_USER_BLOCKS = ("text", "image", "document", "tool_result")
_ASSISTANT_BLOCKS = ("text", "tool_use", "thinking", "redacted_thinking")
_BLOCK_TAGS = ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking")
_TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def _fail(path: str, problem: str) -> RequestError:
    return RequestError(f"{path}: {problem}")


def _tags(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _str_field(obj: Mapping[str, Any], key: str, path: str, *, non_empty: bool = False) -> str:
    if key not in obj:
        raise _fail(f"{path}.{key}", "Field required")
    value = obj[key]
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", "Input should be a valid string")
    if non_empty and not value:
        raise _fail(f"{path}.{key}", "String should have at least 1 character")
    return value


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "Input should be a valid dictionary")
    return value


def _tagged(value: object, path: str, tags: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """A discriminated-union member: an object whose `type` is one of `tags`."""
    obj = _object(value, path)
    kind = obj.get("type")
    if kind not in tags:
        if "type" not in obj:
            raise _fail(path, f"Unable to extract tag using discriminator 'type'. Expected one of {_tags(tags)}")
        problem = f"Input tag '{kind}' found using 'type' does not match any of the expected tags: {_tags(tags)}"
        raise _fail(path, problem)
    return obj, str(kind)


def validate_messages_request(body: Mapping[str, Any], *, count_only: bool = False) -> None:
    """Validate a `POST /v1/messages` body; `count_only` for `/v1/messages/count_tokens` (no `max_tokens`)."""
    if "model" not in body:
        raise _fail("model", "Field required")
    if not isinstance(body["model"], str):
        raise _fail("model", "Input should be a valid string")
    if not count_only:
        _check_max_tokens(body)
    _validate_messages(body.get("messages"), "messages" in body)
    _validate_system(body.get("system"))
    _check_bool(body, "stream")
    _check_range(body, "temperature", 0, 1)
    _check_range(body, "top_p", 0, 1)
    if body.get("top_k") is not None and (not _is_int(body["top_k"]) or body["top_k"] < 0):
        raise _fail("top_k", "Input should be a non-negative integer")
    _validate_stop_sequences(body.get("stop_sequences"))
    if body.get("metadata") is not None:
        metadata = _object(body["metadata"], "metadata")
        if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
            raise _fail("metadata.user_id", "Input should be a valid string")
    names = _validate_tools(body.get("tools"))
    _validate_tool_choice(body.get("tool_choice"), names, body.get("tools") is not None)
    _validate_thinking(body)


def _check_max_tokens(body: Mapping[str, Any]) -> None:
    if body.get("max_tokens") is None:
        raise _fail("max_tokens", "Field required")
    value = body["max_tokens"]
    if not _is_int(value):
        raise _fail("max_tokens", "Input should be a valid integer")
    if value < 1:
        raise _fail("max_tokens", "Input should be greater than or equal to 1")


def _check_bool(body: Mapping[str, Any], key: str) -> None:
    if body.get(key) is not None and not isinstance(body[key], bool):
        raise _fail(key, "Input should be a valid boolean")


def _check_range(body: Mapping[str, Any], key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if not _is_number(value):
        raise _fail(key, "Input should be a valid number")
    if value < low:
        raise _fail(key, f"Input should be greater than or equal to {low:g}")
    if value > high:
        raise _fail(key, f"Input should be less than or equal to {high:g}")


def _validate_stop_sequences(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _fail("stop_sequences", "Input should be a valid list")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _fail(f"stop_sequences.{index}", "Input should be a valid string")
        if not item.strip():
            raise _fail("stop_sequences", "each stop sequence must contain non-whitespace")


def _validate_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _fail("system", "Input should be a valid list")
    for index, block in enumerate(system):
        _tagged(block, f"system.{index}", ("text",))
        _check_text_block(block, f"system.{index}", "system")


def _check_text_block(block: Mapping[str, Any], path: str, owner: str) -> None:
    text = _str_field(block, "text", path)
    if not text:
        raise _fail(owner, "text content blocks must be non-empty")
    if not text.strip():
        raise _fail(owner, "text content blocks must contain non-whitespace text")


def _validate_messages(messages: object, present: bool) -> None:
    if not present:
        raise _fail("messages", "Field required")
    if not isinstance(messages, list):
        raise _fail("messages", "Input should be a valid list")
    if not messages:
        raise _fail("messages", "at least one message is required")
    for index, message in enumerate(messages):
        _validate_message(message, index, is_last=index == len(messages) - 1)
    if messages[0]["role"] != "user":
        raise _fail("messages", 'first message must use the "user" role')
    _check_tool_pairing(messages)
    _check_prefill(messages[-1])


def _validate_message(message: object, index: int, *, is_last: bool) -> None:
    path = f"messages.{index}"
    obj = _object(message, path)
    role = obj.get("role")
    if "role" not in obj:
        raise _fail(f"{path}.role", "Field required")
    if role not in ("user", "assistant"):
        raise _fail(f"{path}.role", "Input should be 'user' or 'assistant'")
    if "content" not in obj:
        raise _fail(f"{path}.content", "Field required")
    content = obj["content"]
    if not content and not (is_last and role == "assistant") and isinstance(content, str | list):
        raise _fail(path, "all messages must have non-empty content except for the optional final assistant message")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(f"{path}.content", "Input should be a valid list")
    allowed = _USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS
    for position, block in enumerate(content):
        block_path = f"{path}.content.{position}"
        _, kind = _tagged(block, block_path, _BLOCK_TAGS)
        if kind not in allowed:
            raise _fail(block_path, f"`{kind}` blocks are not allowed in `{role}` messages")
        _validate_block(block, kind, block_path)


def _validate_block(block: dict[str, Any], kind: str, path: str) -> None:
    if kind == "text":
        _check_text_block(block, path, "messages")
    elif kind == "image":
        _validate_image_source(block.get("source"), f"{path}.image.source", "source" in block)
    elif kind == "document":
        _validate_document_source(block.get("source"), f"{path}.document.source", "source" in block)
    elif kind == "tool_use":
        tool_id = _str_field(block, "id", f"{path}.tool_use")
        if not _TOOL_USE_ID.match(tool_id):
            raise _fail(f"{path}.tool_use.id", "String should match pattern '^[a-zA-Z0-9_-]+$'")
        _str_field(block, "name", f"{path}.tool_use", non_empty=True)
        if "input" not in block:
            raise _fail(f"{path}.tool_use.input", "Field required")
        _object(block["input"], f"{path}.tool_use.input")
    elif kind == "tool_result":
        _validate_tool_result(block, f"{path}.tool_result")
    elif kind == "thinking":
        _str_field(block, "thinking", f"{path}.thinking")
        _str_field(block, "signature", f"{path}.thinking")
    else:
        _str_field(block, "data", f"{path}.redacted_thinking")


def _validate_image_source(source: object, path: str, present: bool) -> None:
    if not present:
        raise _fail(path, "Field required")
    obj, kind = _tagged(source, path, ("base64", "url", "file"))
    if kind == "base64":
        if obj.get("media_type") not in IMAGE_MEDIA_TYPES:
            expected = "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
            raise _fail(f"{path}.base64.media_type", f"Input should be {expected}")
        _str_field(obj, "data", f"{path}.base64", non_empty=True)
    elif kind == "url":
        url = _str_field(obj, "url", f"{path}.url")
        if not url.startswith(("http://", "https://")):
            raise _fail(f"{path}.url.url", "Only HTTP and HTTPS URLs are supported")
    else:
        _str_field(obj, "file_id", f"{path}.file", non_empty=True)


def _validate_document_source(source: object, path: str, present: bool) -> None:
    if not present:
        raise _fail(path, "Field required")
    obj, kind = _tagged(source, path, ("base64", "text", "url", "content", "file"))
    if kind == "base64":
        if obj.get("media_type") != "application/pdf":
            raise _fail(f"{path}.base64.media_type", "Input should be 'application/pdf'")
        _str_field(obj, "data", f"{path}.base64", non_empty=True)
    elif kind == "text":
        if obj.get("media_type") != "text/plain":
            raise _fail(f"{path}.text.media_type", "Input should be 'text/plain'")
        _str_field(obj, "data", f"{path}.text")
    elif kind == "url":
        _str_field(obj, "url", f"{path}.url", non_empty=True)
    elif kind == "content":
        content = obj.get("content")
        if not isinstance(content, str | list):
            raise _fail(f"{path}.content.content", "Input should be a valid string or list")
    else:
        _str_field(obj, "file_id", f"{path}.file", non_empty=True)


def _validate_tool_result(block: dict[str, Any], path: str) -> None:
    tool_use_id = _str_field(block, "tool_use_id", path)
    if not _TOOL_USE_ID.match(tool_use_id):
        raise _fail(f"{path}.tool_use_id", "String should match pattern '^[a-zA-Z0-9_-]+$'")
    if block.get("is_error") is not None and not isinstance(block["is_error"], bool):
        raise _fail(f"{path}.is_error", "Input should be a valid boolean")
    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(f"{path}.content", "Input should be a valid list")
    for position, part in enumerate(content):
        part_path = f"{path}.content.{position}"
        _, kind = _tagged(part, part_path, ("text", "image", "document", "search_result"))
        if kind in ("text", "image", "document"):
            _validate_block(part, kind, part_path)


def _turns(messages: list[dict[str, Any]]) -> list[tuple[str, list[tuple[int, int, dict[str, Any]]]]]:
    """Consecutive same-role messages merged (as the API does): (role, [(message index, block index, block)])."""
    turns: list[tuple[str, list[tuple[int, int, dict[str, Any]]]]] = []
    for index, message in enumerate(messages):
        content = message["content"]
        parts = content if isinstance(content, list) else []
        blocks = [(index, position, block) for position, block in enumerate(parts)]
        if turns and turns[-1][0] == message["role"]:
            turns[-1][1].extend(blocks)
        else:
            turns.append((message["role"], blocks))
    return turns


def _check_tool_pairing(messages: list[dict[str, Any]]) -> None:
    """Every `tool_use` is answered by a `tool_result` in the next (user) turn, and nothing else is."""
    pending: list[str] = []
    pending_at = 0
    seen: set[str] = set()
    for role, blocks in _turns(messages):
        if role == "assistant":  # turns alternate, so `pending` was settled by the user turn before
            for index, position, block in blocks:
                if block["type"] == "tool_use":
                    if block["id"] in seen:
                        raise _fail(f"messages.{index}.content.{position}", "`tool_use` ids must be unique")
                    seen.add(block["id"])
                    pending.append(block["id"])
                    pending_at = index
            continue
        answered: list[str] = []
        other_seen = False
        for index, position, block in blocks:
            if block["type"] != "tool_result":
                other_seen = True
                continue
            path = f"messages.{index}.content.{position}"
            if other_seen:
                raise _fail(path, "tool_result blocks must come before any other content in a user message")
            if block["tool_use_id"] not in pending:
                raise _fail(
                    path,
                    f"unexpected `tool_use_id` found in `tool_result` blocks: {block['tool_use_id']}. Each "
                    "`tool_result` block must have a corresponding `tool_use` block in the previous message.",
                )
            answered.append(block["tool_use_id"])
        missing = [tool_id for tool_id in pending if tool_id not in answered]
        if missing:
            raise _missing_results(pending_at, missing)
        pending = []


def _missing_results(index: int, missing: list[str]) -> RequestError:
    return _fail(
        f"messages.{index}",
        f"`tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(missing)}. Each "
        "`tool_use` block must have a corresponding `tool_result` block in the next message.",
    )


def _check_prefill(last: Mapping[str, Any]) -> None:
    if last["role"] != "assistant":
        return
    content = last["content"]
    texts = [content] if isinstance(content, str) else [b["text"] for b in content if b["type"] == "text"]
    if texts and texts[-1] and texts[-1] != texts[-1].rstrip():
        raise _fail("messages", "final assistant content cannot end with trailing whitespace")


def _validate_tools(tools: object) -> list[str]:
    """Validate `tools`; return the names of every tool (client and server)."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _fail("tools", "Input should be a valid list")
    names: list[str] = []
    for index, value in enumerate(tools):
        path = f"tools.{index}"
        tool = _object(value, path)
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            if not isinstance(kind, str):
                raise _fail(f"{path}.type", "Input should be a valid string")
            names.append(_str_field(tool, "name", path, non_empty=True))  # server tool, e.g. web_search_20250305
            continue
        path = f"{path}.custom"
        name = _str_field(tool, "name", path)
        if not FUNCTION_NAME.match(name):
            raise _fail(f"{path}.name", "String should match pattern '^[a-zA-Z0-9_-]{1,64}$'")
        if tool.get("description") is not None and not isinstance(tool["description"], str):
            raise _fail(f"{path}.description", "Input should be a valid string")
        if "input_schema" not in tool:
            raise _fail(f"{path}.input_schema", "Field required")
        schema = _object(tool["input_schema"], f"{path}.input_schema")
        if schema.get("type") != "object":
            raise _fail(f"{path}.input_schema.type", "Input should be 'object'")
        names.append(name)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise _fail("tools", f"Tool names must be unique: {', '.join(duplicates)}")
    return names


def _validate_tool_choice(choice: object, names: list[str], has_tools: bool) -> None:
    if choice is None:
        return
    obj, kind = _tagged(choice, "tool_choice", TOOL_CHOICES)
    if kind != "none" and obj.get("disable_parallel_tool_use") is not None:
        if not isinstance(obj["disable_parallel_tool_use"], bool):
            raise _fail(f"tool_choice.{kind}.disable_parallel_tool_use", "Input should be a valid boolean")
    if kind in ("any", "tool") and not has_tools:
        raise _fail("tool_choice", f"tool_choice.type '{kind}' may only be specified while providing tools")
    if kind == "tool":
        name = _str_field(obj, "name", "tool_choice.tool")
        if name not in names:
            raise _fail("tool_choice.tool.name", f"Tool '{name}' not found in provided tools")


def _validate_thinking(body: Mapping[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    obj, kind = _tagged(thinking, "thinking", ("enabled", "disabled", "adaptive"))
    if kind != "enabled":
        return
    budget = obj.get("budget_tokens")
    if budget is None:
        raise _fail("thinking.enabled.budget_tokens", "Field required")
    if not _is_int(budget):
        raise _fail("thinking.enabled.budget_tokens", "Input should be a valid integer")
    if budget < MIN_THINKING_BUDGET:
        raise _fail("thinking.enabled.budget_tokens", f"Input should be greater than or equal to {MIN_THINKING_BUDGET}")
    max_tokens = body.get("max_tokens")
    if _is_int(max_tokens) and max_tokens <= budget:
        raise _fail("max_tokens", f"must be greater than thinking.budget_tokens ({budget})")
    if body.get("temperature") is not None and body["temperature"] != 1:
        raise _fail("temperature", "may only be set to 1 when thinking is enabled")
    if body.get("top_k") is not None:
        raise _fail("top_k", "must be unset when thinking is enabled")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise _fail("tool_choice", "Thinking may not be enabled when tool_choice forces tool use.")


def thinking_enabled(body: Mapping[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"
