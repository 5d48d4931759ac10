"""A protocol-faithful AWS Bedrock Runtime simulator (the Converse API), as a raw ASGI app.

Serves `POST /model/{modelId}/converse` (JSON) and `POST /model/{modelId}/converse-stream` (an AWS event stream,
`application/vnd.amazon.eventstream`, with each event's `p` padding field), plus `GET /health`. Requests are checked
against botocore's own service model and Bedrock's conversation rules (`_bedrock_validation`); errors are
`{"message": ...}` with `x-amzn-ErrorType`, and every response carries `x-amzn-RequestId`.

Auth, when `SimulatorSettings.api_key` is set: a SigV4 signature (service `bedrock`, any region) recomputed with
botocore for access key id `ACCESS_KEY_ID` and the api_key as its secret (or keys given to `create_app`), or the
api_key as a Bedrock API key (`Authorization: Bearer <key>`). Without an api_key nothing is checked.

Replies, faults and control endpoints are the Anthropic simulator's (Claude on Bedrock): the same deterministic
text, tool calls from the tools' JSON schemas, thinking when `additionalModelRequestFields.thinking` enables it,
`[sim:...]` directives, `POST /_sim/faults`, `GET /_sim/requests`. Injected errors use Bedrock's exception types
(429 ThrottlingException, 503 ServiceUnavailableException, ...); `midstream_error` ends a stream with a
`modelStreamErrorException` message.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from yourouter.codecs.bedrock.eventstream import CONTENT_TYPE, event_message, exception_message

from ._anthropic_messages import Block, MessageReply, last_user_directives, plan_message
from ._asgi import Headers, Send, send_json, serve
from ._base import Exchange, Fault, Request, SimulatorApp, SimulatorSettings, parse_json
from ._bedrock_validation import AwsError, validate_converse, verify_sigv4
from ._openai_chat import split_fragments, split_text
from ._openai_validation import RequestError

__all__ = ["ACCESS_KEY_ID", "BedrockSimulator", "create_app", "run"]

ACCESS_KEY_ID = "AKIAYOUROUTERSIM0001"
ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("ValidationException", "Simulated validation error."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the provided model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model encountered an error while processing the request."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "The service is unavailable. Please try again later."),
}
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_DEFAULT_MAX_TOKENS = 4096


def error_type_for(status: int) -> tuple[str, str]:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return ERROR_TYPES[500] if status >= 500 else ("ValidationException", f"Simulated error {status}.")


# Converse <-> the Anthropic planner's shapes ----------------------------------------------------------------------

def _block_for_planner(block: Mapping[str, Any]) -> dict[str, Any]:
    if "text" in block:
        return {"type": "text", "text": block["text"]}
    if "image" in block:
        return {"type": "image", "source": {"type": "base64"}}
    if "toolUse" in block:
        use = block["toolUse"]
        return {"type": "tool_use", "id": use["toolUseId"], "name": use["name"], "input": use.get("input")}
    if "toolResult" in block:
        result = block["toolResult"]
        content = [{"type": "text", "text": item.get("text") or orjson.dumps(item.get("json")).decode()}
                   for item in result["content"] if "text" in item or "json" in item]
        return {"type": "tool_result", "tool_use_id": result["toolUseId"], "content": content,
                "is_error": result.get("status") == "error"}
    if "reasoningContent" in block:
        text = (block["reasoningContent"].get("reasoningText") or {}).get("text", "")
        return {"type": "thinking", "thinking": text, "signature": ""}
    return {"type": "document", "source": {"type": "base64"}}  # documents, cache points and the rest


def planner_body(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The Converse request as the Anthropic reply planner reads it."""
    inference = body.get("inferenceConfig") or {}
    planned: dict[str, Any] = {
        "model": model,
        "max_tokens": inference.get("maxTokens") or _DEFAULT_MAX_TOKENS,
        "messages": [{"role": m["role"], "content": [_block_for_planner(b) for b in m["content"] if b]}
                     for m in body["messages"]],
        "system": " ".join(b["text"] for b in body.get("system") or [] if "text" in b),
        "stop_sequences": inference.get("stopSequences") or [],
    }
    tools = (body.get("toolConfig") or {}).get("tools") or []
    planned["tools"] = [{"name": t["toolSpec"]["name"], "description": t["toolSpec"].get("description", ""),
                         "input_schema": t["toolSpec"]["inputSchema"].get("json")} for t in tools if "toolSpec" in t]
    choice = (body.get("toolConfig") or {}).get("toolChoice")
    if choice:
        kind = next(iter(choice))
        planned["tool_choice"] = {"type": kind, **({"name": choice["tool"]["name"]} if kind == "tool" else {})}
    thinking = (body.get("additionalModelRequestFields") or {}).get("thinking")
    if isinstance(thinking, dict):
        planned["thinking"] = thinking
    return planned


def _tool_use_id(rng: random.Random) -> str:
    return "tooluse_" + "".join(rng.choice(_PADDING[:62]) for _ in range(22))


def _converse_block(block: Block, ids: dict[str, str], rng: random.Random) -> dict[str, Any]:
    if block.type == "tool_use":
        ids.setdefault(block.id, _tool_use_id(rng))
        return {"toolUse": {"toolUseId": ids[block.id], "name": block.name, "input": orjson.loads(block.input_json)}}
    if block.type == "thinking":
        return {"reasoningContent": {"reasoningText": {"text": block.text, "signature": block.signature}}}
    return {"text": block.text}


def _usage(reply: MessageReply) -> dict[str, int]:
    return {"inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens}


def render_converse(reply: MessageReply, rng: random.Random, latency_ms: int) -> dict[str, Any]:
    ids: dict[str, str] = {}
    return {"output": {"message": {"role": "assistant",
                                   "content": [_converse_block(b, ids, rng) for b in reply.content]}},
            "stopReason": reply.stop_reason, "usage": _usage(reply), "metrics": {"latencyMs": latency_ms}}


def _padded(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Bedrock pads every event with a `p` field of random length (against length side channels)."""
    return {**payload, "p": _PADDING[:rng.randint(1, len(_PADDING))]}


def render_stream(reply: MessageReply, rng: random.Random, latency_ms: int) -> list[bytes]:
    """messageStart, per block (contentBlockStart for tool use) deltas and contentBlockStop, messageStop, metadata."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    ids: dict[str, str] = {}
    for index, block in enumerate(reply.content):
        if block.type == "tool_use":
            use = _converse_block(block, ids, rng)["toolUse"]
            events.append(("contentBlockStart", {"start": {"toolUse": {"toolUseId": use["toolUseId"],
                                                                       "name": use["name"]}},
                                                 "contentBlockIndex": index}))
            deltas: list[dict[str, Any]] = [{"toolUse": {"input": piece}}
                                            for piece in split_fragments(block.input_json, 3)]
        elif block.type == "thinking":
            deltas = [{"reasoningContent": {"text": piece}} for piece in split_text(block.text)]
            deltas.append({"reasoningContent": {"signature": block.signature}})
        else:
            deltas = [{"text": piece} for piece in split_text(block.text)]
        events += [("contentBlockDelta", {"delta": delta, "contentBlockIndex": index}) for delta in deltas]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": reply.stop_reason}))
    events.append(("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": latency_ms}}))
    return [event_message(name, _padded(payload, rng)) for name, payload in events]


# The app ----------------------------------------------------------------------------------------------------------

class BedrockSimulator(SimulatorApp[AwsError | RequestError]):
    """The ASGI application. `state` is exposed for in-process use (queueing faults, reading the request log)."""

    errors = (AwsError, RequestError)
    logs_query = False

    def __init__(self, settings: SimulatorSettings, credentials: Mapping[str, str] | None = None) -> None:
        super().__init__(settings)
        self.credentials = dict(credentials) if credentials is not None else (
            {ACCESS_KEY_ID: settings.api_key} if settings.api_key else {})

    def response_headers(self, request: Request) -> Headers:
        return [(b"x-amzn-requestid", str(uuid.UUID(int=self.state.rng.getrandbits(128))).encode())]

    async def send_error(self, error: AwsError | RequestError, ex: Exchange) -> None:
        if isinstance(error, AwsError):
            await self._error(ex.send, error.status, error.error_type, error.message, ex.headers)
        else:
            await self._error(ex.send, error.status, error_type_for(error.status)[0], error.message, ex.headers)

    @staticmethod
    async def _error(send: Send, status: int, error_type: str, message: str, headers: Headers,
                     retry_after: float | None = None) -> None:
        extra = [*headers, (b"x-amzn-errortype", (error_type + _ERROR_NAMESPACE).encode())]
        if retry_after is not None:
            extra.append((b"retry-after", f"{retry_after:g}".encode()))
        await send_json(send, status, {"message": message}, extra)

    async def handle(self, ex: Exchange) -> None:
        method, path = ex.request.method, ex.request.path
        if path == "/health":
            await send_json(ex.send, 200, {"status": "ok"}, ex.headers)
            return
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in ("converse", "converse-stream"):
            raise AwsError("UnknownOperationException", "Unknown operation", status=404)
        if method != "POST":
            raise AwsError("UnknownOperationException", f"Method Not Allowed ({method} {path})", status=405)
        self._authenticate(ex.request)
        value, ok = parse_json(ex.request.body)
        if not ok or not isinstance(value, dict):
            raise AwsError("SerializationException", "Unable to parse the request body as JSON.")
        await self._converse(value, parts[2], parts[3] == "converse-stream", ex)

    def _authenticate(self, request: Request) -> None:
        if not self.settings.api_key and not self.credentials:
            return
        headers = request.headers
        if headers.get("authorization", "").startswith("Bearer "):
            if headers["authorization"][7:] != self.settings.api_key:
                raise AwsError("UnrecognizedClientException", "Invalid API Key format: Must start with pre-defined "
                                                              "prefix", status=403)
            return
        scope = request.scope
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        url = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}{raw_path.decode('latin-1')}"
        if query:
            url += "?" + query.decode("latin-1")
        verify_sigv4(request.method, url, headers, request.body, self.credentials)

    async def _converse(self, body: dict[str, Any], model: str, stream: bool, ex: Exchange) -> None:
        started = time.perf_counter()
        if not await self.apply_faults(ex, self.queued_faults()):
            return
        validate_converse(body)
        planned = planner_body(body, model)
        directives = last_user_directives(planned)
        if not await self.settle(ex, directives):
            return
        reply = plan_message(planned, directives, self.state.rng)
        latency = int((time.perf_counter() - started) * 1000)
        if not stream:
            await self.send_body(render_converse(reply, self.state.rng, latency), ex)
            return
        error = exception_message("modelStreamErrorException", "The model stream was interrupted (simulated).")
        await self.send_stream(ex, render_stream(reply, self.state.rng, latency),
                               [(b"content-type", CONTENT_TYPE.encode()), *ex.headers], lambda _: error)

    async def send_fault(self, fault: Fault, ex: Exchange, headers: Headers) -> None:
        error_type, message = error_type_for(fault.status)
        await self._error(ex.send, fault.status, error_type, message, headers, fault.retry_after)


def create_app(settings: SimulatorSettings, credentials: Mapping[str, str] | None = None) -> BedrockSimulator:
    """Build the simulator ASGI app; `credentials` maps access key ids to secret keys (default: see above)."""
    return BedrockSimulator(settings, credentials)


def run(settings: SimulatorSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    serve(create_app(settings), host, port)
