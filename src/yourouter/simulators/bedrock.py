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
from ._asgi import (
    ClientWatch,
    Headers,
    Receive,
    Scope,
    Send,
    drop_connection,
    header_map,
    read_body,
    run_lifespan,
    send_half_body,
    send_json,
    serve,
    stream_events,
)
from ._bedrock_validation import AwsError, validate_converse, verify_sigv4
from ._openai_chat import split_fragments, split_text
from ._openai_validation import RequestError
from .openai import Fault, SimulatorSettings, SimulatorState, _directive_faults, _parse_json, serve_control

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

class BedrockSimulator:
    """The ASGI application. `state` is exposed for in-process use (queueing faults, reading the request log)."""

    def __init__(self, settings: SimulatorSettings, credentials: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.state = SimulatorState(settings.seed)
        self.credentials = dict(credentials) if credentials is not None else (
            {ACCESS_KEY_ID: settings.api_key} if settings.api_key else {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"]
        raw = await read_body(receive)
        if path.startswith("/_sim/"):
            await serve_control(self.state, method, path, raw, send)
            return
        self.state.record(method, path, header_map(scope), _parse_json(raw)[0])
        headers: Headers = [(b"x-amzn-requestid", str(uuid.UUID(int=self.state.rng.getrandbits(128))).encode())]
        watch = ClientWatch(receive)
        try:
            await self._route(scope, raw, watch, send, headers)
        except AwsError as error:
            await self._error(send, error.status, error.error_type, error.message, headers)
        except RequestError as error:
            await self._error(send, error.status, error_type_for(error.status)[0], error.message, headers)
        finally:
            watch.close()

    @staticmethod
    async def _error(send: Send, status: int, error_type: str, message: str, headers: Headers,
                     retry_after: float | None = None) -> None:
        extra = [*headers, (b"x-amzn-errortype", (error_type + _ERROR_NAMESPACE).encode())]
        if retry_after is not None:
            extra.append((b"retry-after", f"{retry_after:g}".encode()))
        await send_json(send, status, {"message": message}, extra)

    async def _route(self, scope: Scope, raw: bytes, watch: ClientWatch, send: Send, headers: Headers) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/health":
            await send_json(send, 200, {"status": "ok"}, headers)
            return
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in ("converse", "converse-stream"):
            raise AwsError("UnknownOperationException", "Unknown operation", status=404)
        if method != "POST":
            raise AwsError("UnknownOperationException", f"Method Not Allowed ({method} {path})", status=405)
        self._authenticate(scope, raw)
        value, ok = _parse_json(raw)
        if not ok or not isinstance(value, dict):
            raise AwsError("SerializationException", "Unable to parse the request body as JSON.")
        await self._converse(value, parts[2], parts[3] == "converse-stream", watch, send, headers)

    def _authenticate(self, scope: Scope, raw: bytes) -> None:
        if not self.settings.api_key and not self.credentials:
            return
        headers = header_map(scope)
        if headers.get("authorization", "").startswith("Bearer "):
            if headers["authorization"][7:] != self.settings.api_key:
                raise AwsError("UnrecognizedClientException", "Invalid API Key format: Must start with pre-defined "
                                                              "prefix", status=403)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        url = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}{raw_path.decode('latin-1')}"
        if query:
            url += "?" + query.decode("latin-1")
        verify_sigv4(scope["method"], url, headers, raw, self.credentials)

    async def _converse(self, body: dict[str, Any], model: str, stream: bool, watch: ClientWatch, send: Send,
                        headers: Headers) -> None:
        started = time.perf_counter()
        queued = self.state.take_fault()
        if queued is None and self.settings.fail_rate and self.state.rng.random() < self.settings.fail_rate:
            queued = Fault("status", status=self.settings.fail_status)
        midstream = [queued] if queued is not None and queued.kind.startswith("midstream") else []
        if queued is not None and not midstream and not await self._apply_fault(queued, watch, send, headers):
            return
        validate_converse(body)
        planned = planner_body(body, model)
        directives = last_user_directives(planned)
        for fault in _directive_faults(directives):
            if fault.kind.startswith("midstream"):
                midstream.append(fault)
            elif not await self._apply_fault(fault, watch, send, headers):
                return
        if not await watch.pause(self.settings.latency_ms / 1000):
            return
        cut = midstream[0] if midstream else None
        reply = plan_message(planned, directives, self.state.rng)
        latency = int((time.perf_counter() - started) * 1000)
        if not stream:
            payload = render_converse(reply, self.state.rng, latency)
            if cut is None:
                await send_json(send, 200, payload, headers)
            elif cut.kind == "midstream_error":
                await self._apply_fault(Fault("status", status=500), watch, send, headers)
            else:
                await send_half_body(send, payload, watch, headers)
            return
        error = exception_message("modelStreamErrorException", "The model stream was interrupted (simulated).")
        await stream_events(send, render_stream(reply, self.state.rng, latency), cut, watch,
                            self.settings.chunk_delay_ms / 1000,
                            [(b"content-type", CONTENT_TYPE.encode()), *headers], lambda _: error)

    async def _apply_fault(self, fault: Fault, watch: ClientWatch, send: Send, headers: Headers) -> bool:
        """Apply a pre-response fault; return True when the request should still be answered normally."""
        if fault.kind == "timeout":
            return await watch.pause(fault.delay_ms / 1000)
        if fault.kind == "disconnect":
            await drop_connection(send, watch)
            return False
        error_type, message = error_type_for(fault.status)
        await self._error(send, fault.status, error_type, message, headers, fault.retry_after)
        return False


def create_app(settings: SimulatorSettings, credentials: Mapping[str, str] | None = None) -> BedrockSimulator:
    """Build the simulator ASGI app; `credentials` maps access key ids to secret keys (default: see above)."""
    return BedrockSimulator(settings, credentials)


def run(settings: SimulatorSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the simulator with uvicorn until interrupted."""
    serve(create_app(settings), host, port)
