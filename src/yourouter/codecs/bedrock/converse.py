"""AWS Bedrock Converse <-> IR: requests, responses, errors and usage.

Bedrock is an upstream protocol only (no client speaks it to the gateway), so this codec encodes requests and
decodes responses and streams; nothing renders Converse to a client. The model id travels in the URL, not the body.
Bytes (images, documents) are base64 strings in Converse's JSON wire format; URLs are fetched first by the pipeline
(`needs_inline`). Reasoning signatures are tagged `bedrock:` so that they are replayed to Bedrock only.
"""

from __future__ import annotations

import re
import time
from typing import Any

from yourouter.codecs.common import arguments_object, arguments_text, json_instruction, object_or_none, refuse
from yourouter.ir.chat import (
    ChatRequest,
    ChatResponse,
    Choice,
    Document,
    FinishReason,
    Image,
    Part,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    Unknown,
)
from yourouter.ir.errors import bad_request
from yourouter.ir.usage import Usage

DIALECT = "bedrock"
TARGET = "Bedrock"
SIGNATURE_TAG = "bedrock:"
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
DOCUMENT_FORMATS = {"application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
                    "application/vnd.ms-excel": "xls",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
                    "text/html": "html", "text/plain": "txt", "text/markdown": "md"}
_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9\s\-()\[\]]")
_EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
_DEFAULT_MAX_TOKENS = 4096


def needs_inline(part: Image | Document) -> bool:
    """Converse takes bytes (or S3 locations), never http(s) URLs: the pipeline fetches those first."""
    return bool(part.url) and not (part.url or "").startswith("s3://")


def _anthropic_model(model: str) -> bool:
    return "anthropic." in model or model.startswith("claude")


# Requests -------------------------------------------------------------------------------------------------------

def tool_use_id(value: str) -> str:
    """Converse ids: ^[a-zA-Z0-9_-]+$, at most 64 characters; mapped the same way on every turn."""
    cleaned = _ID_CHARS.sub("_", value)[:64]
    return cleaned or "tooluse_0"


def _image(part: Image, where: str) -> dict[str, Any]:
    if part.url:
        if part.url.startswith("s3://"):
            return {"image": {"format": _image_format(part, where), "source": {"s3Location": {"uri": part.url}}}}
        raise bad_request(f"{where}: the image at {part.url} could not be sent to a Bedrock model (Converse takes "
                          "image bytes).", param=where, code="untranslatable_content")
    return {"image": {"format": _image_format(part, where), "source": {"bytes": part.data}}}


def _image_format(part: Image, where: str) -> str:
    media = (part.media_type or "").lower()
    if media in IMAGE_FORMATS:
        return IMAGE_FORMATS[media]
    if part.url and part.url.rsplit(".", 1)[-1].lower() in ("png", "jpeg", "jpg", "gif", "webp"):
        suffix = part.url.rsplit(".", 1)[-1].lower()
        return "jpeg" if suffix == "jpg" else suffix
    raise bad_request(f"{where}: Bedrock models accept png, jpeg, gif or webp images, not `{media}`.", param=where,
                      code="untranslatable_content")


def _document(part: Document, where: str, number: int) -> dict[str, Any]:
    kind = DOCUMENT_FORMATS.get(part.media_type.lower())
    if kind is None or not part.data:
        raise bad_request(f"{where}: Bedrock models take pdf, csv, doc(x), xls(x), html, txt or md documents as "
                          f"bytes, not `{part.media_type}`{' by URL' if part.url else ''}.", param=where,
                          code="untranslatable_content")
    stem = (part.filename or "").rsplit(".", 1)[0]
    name = " ".join(_NAME_CHARS.sub(" ", stem).split())[:200] or f"document {number}"
    return {"document": {"format": kind, "name": name, "source": {"bytes": part.data}}}


def _tool_result(part: ToolResult, where: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for item in part.content:
        if isinstance(item, Text) and item.text:
            content.append({"text": item.text})
        elif isinstance(item, Image):
            content.append(_image(item, where))
    block: dict[str, Any] = {"toolUseId": tool_use_id(part.call_id), "content": content or [{"json": {}}]}
    if part.is_error:
        block["status"] = "error"
    return {"toolResult": block}


def _encode_part(part: Part, where: str, role: str, documents: list[int]) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"text": part.text} if part.text.strip() else None  # Converse refuses blank text blocks
    if isinstance(part, Image):
        return _image(part, where)
    if isinstance(part, Document):
        documents.append(1)
        return _document(part, where, len(documents))
    if isinstance(part, ToolCall):
        return {"toolUse": {"toolUseId": tool_use_id(part.id), "name": part.name,
                            "input": arguments_object(part.arguments)}}
    if isinstance(part, ToolResult):
        return _tool_result(part, where)
    if isinstance(part, Thinking):
        signature = part.signature or ""
        if role != "assistant" or not signature.startswith(SIGNATURE_TAG):
            return None  # only Bedrock's own reasoning can be replayed to it
        if part.redacted:
            return {"reasoningContent": {"redactedContent": part.text}}
        return {"reasoningContent": {"reasoningText": {"text": part.text, "signature": signature[len(SIGNATURE_TAG):]}}}
    if isinstance(part, Unknown) and part.dialect == DIALECT:
        return dict(part.raw)
    refuse(part, TARGET, where)
    return None


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    """Converse wants strictly alternating turns: same-role neighbours are merged, tool results first."""
    out: list[dict[str, Any]] = []
    documents: list[int] = []
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        blocks = [b for p in message.parts if (b := _encode_part(p, where, message.role, documents)) is not None]
        if not blocks:
            texts = [p.text for p in message.parts if isinstance(p, Text) and p.text]
            if not texts:
                continue
            blocks = [{"text": "".join(texts)}]  # only blank text: sent as is, for Bedrock to refuse by name
        if out and out[-1]["role"] == message.role:
            blocks = out.pop()["content"] + blocks
        blocks.sort(key=lambda b: 0 if "toolResult" in b else 1)
        out.append({"role": message.role, "content": blocks})
    return out


def _tool_config(request: ChatRequest, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Converse needs `toolConfig` whenever the history holds tool blocks; tools used there but no longer offered
    are declared with an open schema. `tool_choice: none` has no Converse form: it omits the tools when the
    history allows, else keeps them on `auto`."""
    history_tools = {block["toolUse"]["name"] for m in messages for block in m["content"] if "toolUse" in block}
    has_results = any("toolResult" in block for m in messages for block in m["content"])
    choice = request.tool_choice
    if not request.tools and not history_tools and not has_results:
        return None
    if choice is not None and choice.mode == "none" and not history_tools and not has_results:
        return None
    specs = [{"toolSpec": {"name": t.name, **({"description": t.description} if t.description else {}),
                           "inputSchema": {"json": t.parameters or {"type": "object", "properties": {}}}}}
             for t in request.tools]
    offered = {t.name for t in request.tools}
    specs += [{"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object"}}}}
              for name in sorted(history_tools - offered)]
    if not specs:  # results whose calls are not in the request: one placeholder keeps Converse satisfied
        specs = [{"toolSpec": {"name": "tool", "inputSchema": {"json": {"type": "object"}}}}]
    config: dict[str, Any] = {"tools": specs}
    if choice is not None and request.tools:
        if choice.mode == "required":
            config["toolChoice"] = {"any": {}}
        elif choice.mode == "tool" and choice.name:
            config["toolChoice"] = {"tool": {"name": choice.name}}
        elif choice.mode == "auto":
            config["toolChoice"] = {"auto": {}}
    return config


def encode_request(request: ChatRequest, model: str) -> dict[str, Any]:
    if request.n is not None and request.n > 1:
        raise bad_request("n: Bedrock models return a single choice; n > 1 cannot be translated.", param="n",
                          code="untranslatable_parameter")
    messages = _messages(request)
    body: dict[str, Any] = {"messages": messages}
    system = [p.text for p in request.system if p.text.strip()]
    if request.response_format is not None and (instruction := json_instruction(request.response_format)):
        system.append(instruction)
    if system:
        body["system"] = [{"text": text} for text in system]
    inference: dict[str, Any] = {}
    additional: dict[str, Any] = {}
    max_tokens = request.max_tokens
    reasoning = request.reasoning
    if (_anthropic_model(model) and reasoning is not None and reasoning.enabled
            and (reasoning.budget_tokens or reasoning.effort)):
        budget = max(1024, reasoning.budget_tokens or _EFFORT_BUDGET.get(reasoning.effort or "", 8192))
        additional["thinking"] = {"type": "enabled", "budget_tokens": budget}
        max_tokens = max(max_tokens or _DEFAULT_MAX_TOKENS, budget + 1024)
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if request.temperature is not None:
        inference["temperature"] = min(max(request.temperature, 0.0), 1.0)
    if request.top_p is not None:
        inference["topP"] = min(max(request.top_p, 0.0), 1.0)
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    if request.top_k is not None and _anthropic_model(model):
        additional["top_k"] = request.top_k
    if inference:
        body["inferenceConfig"] = inference
    if additional:
        body["additionalModelRequestFields"] = additional
    tool_config = _tool_config(request, messages)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    return body


# Responses ------------------------------------------------------------------------------------------------------

_STOP_IN: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
    "model_context_window_exceeded": "length", "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter", "malformed_model_output": "error", "malformed_tool_use": "error"}


def stop_reason_in(value: Any) -> FinishReason:
    return _STOP_IN.get(str(value), "stop")


def usage_in(raw: Any) -> Usage | None:
    """Converse counts cache reads and writes apart from `inputTokens`; the IR's prompt includes them."""
    if not isinstance(raw, dict):
        return None
    cached = int(raw.get("cacheReadInputTokens") or 0)
    written = int(raw.get("cacheWriteInputTokens") or 0)
    return Usage(prompt_tokens=int(raw.get("inputTokens") or 0) + cached + written,
                 completion_tokens=int(raw.get("outputTokens") or 0), cached_tokens=cached)


def response_id() -> str:
    """Converse responses carry no id (only the `x-amzn-RequestId` header): one is made up."""
    return f"bedrock-{time.time_ns():x}"


def _response_part(block: Any) -> Part | None:
    if not isinstance(block, dict):
        return None
    if "text" in block:
        return Text(str(block["text"]))
    if "toolUse" in block:
        use = block["toolUse"] or {}
        return ToolCall(id=str(use.get("toolUseId", "")), name=str(use.get("name", "")),
                        arguments=arguments_text(use.get("input", {})))
    if "reasoningContent" in block:
        reasoning = block["reasoningContent"] or {}
        if "redactedContent" in reasoning:
            return Thinking(text=str(reasoning["redactedContent"]), signature=SIGNATURE_TAG, redacted=True)
        text = reasoning.get("reasoningText") or {}
        signature = text.get("signature")
        return Thinking(text=str(text.get("text", "")), signature=SIGNATURE_TAG + signature if signature else None)
    return Unknown(DIALECT, next(iter(block), "unknown"), block)


def decode_response(payload: dict[str, Any]) -> ChatResponse:
    message = (payload.get("output") or {}).get("message") or {}
    parts = tuple(p for block in message.get("content") or [] if (p := _response_part(block)) is not None)
    extra = payload.get("additionalModelResponseFields") or {}
    stop_sequence = extra.get("stop_sequence") if isinstance(extra, dict) else None
    choice = Choice(index=0, parts=parts, finish_reason=stop_reason_in(payload.get("stopReason")),
                    stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None)
    return ChatResponse(id=response_id(), model="", choices=(choice,), usage=usage_in(payload.get("usage")))


def usage_of_response(body: bytes) -> Usage | None:
    payload = object_or_none(body)
    return usage_in(payload.get("usage")) if payload is not None else None


def upstream_error_message(body: bytes) -> str | None:
    """Bedrock errors are `{"message": "..."}` (some services say `Message`), the type in `x-amzn-ErrorType`."""
    payload = object_or_none(body) or {}
    message = payload.get("message") or payload.get("Message")
    return str(message) if message else None
