"""The canonical chat IR: what every dialect's request, response and stream mean, independent of wire format.

Each dialect codec decodes its wire format into these types and encodes them back, so N dialects need N codecs.
Conventions:
- Content is a tuple of typed parts. Tool results are parts of a `user` message (as Anthropic and Gemini carry
  them); the OpenAI codec splits them into `tool` messages.
- Tool-call arguments are a JSON *string* (what the model produced, possibly invalid JSON); codecs whose wire wants
  an object parse it leniently.
- `Unknown` keeps a part the IR does not model, tagged with its dialect, so a codec of the same dialect can emit it
  again and any other codec can refuse it with a 400 that names it (never a silent drop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from yourouter.ir.usage import Usage

Role = Literal["user", "assistant"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    """An image by URL (`url`) or inline (`data`: base64, with `media_type`)."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """A file such as a PDF, inline (`data`: base64) or by URL."""

    media_type: str
    data: str | None = None
    url: str | None = None
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text
    #: Gemini's `thoughtSignature`, which must travel back with the call on the next turn.
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    content: tuple[Text | Image, ...]
    name: str | None = None  # Gemini links results by function name
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Thinking:
    text: str
    signature: str | None = None
    redacted: bool = False  # Anthropic `redacted_thinking`: `text` holds its opaque `data`


@dataclass(frozen=True, slots=True)
class Unknown:
    """A part the IR does not model, kept verbatim."""

    dialect: str
    kind: str
    raw: Any


Part = Text | Image | Document | ToolCall | ToolResult | Thinking | Unknown


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: Literal["auto", "required", "none", "tool"]
    name: str | None = None  # with mode "tool"


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class Reasoning:
    effort: str | None = None  # OpenAI `reasoning_effort`: minimal | low | medium | high
    budget_tokens: int | None = None  # Anthropic / Gemini thinking budget
    include_thoughts: bool = True
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    system: tuple[Text, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    user: str | None = None
    stream: bool = False
    #: The client asked for usage in the stream (OpenAI `stream_options.include_usage`).
    include_usage: bool = False
    #: Fields of the source dialect that no other dialect has, by name; never emitted into another dialect.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    parts: tuple[Part, ...]
    finish_reason: FinishReason | None
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class ChatResponse:
    id: str
    model: str
    choices: tuple[Choice, ...]
    usage: Usage | None = None
    created: int | None = None


# Stream events --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StreamStart:
    id: str
    model: str
    usage: Usage | None = None  # what is known at the start (Anthropic: input tokens)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    text: str = ""
    signature: str | None = None
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    index: int  # position of the call within the choice's calls
    id: str
    name: str
    signature: str | None = None
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    arguments: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class StreamFinish:
    reason: FinishReason
    stop_sequence: str | None = None
    choice: int = 0


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    """Cumulative usage so far; the last one is authoritative."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class StreamError:
    status: int
    message: str
    kind: str = "upstream"


StreamEvent = (StreamStart | TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta | StreamFinish | UsageUpdate
               | StreamError)


# Embeddings ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None
    #: Dialect details for the client's own codec (e.g. Gemini's single vs batch form).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    model: str
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage | None = None
