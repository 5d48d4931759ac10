"""Small pure helpers shared by the dialect codecs."""

from __future__ import annotations

import re
from typing import Any

import orjson

from yourouter.ir.chat import ChatRequest, Document, Image, Part, ResponseFormat, Text, Unknown
from yourouter.ir.errors import bad_request

#: `ChatRequest.extra` key listing what the source dialect had that no other dialect can carry.
UNTRANSLATABLE = "_untranslatable"

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)


def parse_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (every dialect's bodies are)."""
    if not body:
        raise bad_request("The request body is empty; expected a JSON object.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc.msg} (at character {exc.pos}).") from None
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object.")
    return payload


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`data:<mime>;base64,<data>` -> (mime, base64 data); None for anything else."""
    match = _DATA_URL.match(url)
    if match is None or not match.group("b64"):
        return None
    return (match.group("mime") or "application/octet-stream").lower(), url[match.end():]


def data_url(media_type: str, data: str) -> str:
    return f"data:{media_type};base64,{data}"


def arguments_object(arguments: str) -> dict[str, Any]:
    """Tool-call arguments (a model's JSON text) as an object, leniently: invalid or non-object JSON is kept under
    a single key instead of failing the request."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def arguments_text(value: Any) -> str:
    if value is None:
        return "{}"
    return orjson.dumps(value).decode()


def text_of(parts: tuple[Part, ...] | list[Part]) -> str:
    return "".join(part.text for part in parts if isinstance(part, Text))


def refuse(part: Part, target: str, where: str) -> None:
    """A part the target dialect cannot carry: a 400 naming it, never a silent drop."""
    kind = part.kind if isinstance(part, Unknown) else type(part).__name__.lower()
    raise bad_request(f"{where}: content of type `{kind}` cannot be sent to a {target} model.", param=where,
                      code="untranslatable_content")


def image_or_document(part: Part) -> Image | Document | None:
    return part if isinstance(part, Image | Document) else None


def require(condition: bool, message: str, param: str | None = None) -> None:
    if not condition:
        raise bad_request(message, param=param)


def as_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"`{where}` must be an object.", param=where)
    return value


def as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad_request(f"`{where}` must be an array.", param=where)
    return value


def optional_number(payload: dict[str, Any], name: str, where: str | None = None) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"`{where or name}` must be a number.", param=where or name)
    return float(value)


def optional_int(payload: dict[str, Any], name: str, where: str | None = None) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"`{where or name}` must be an integer.", param=where or name)
    return value


def check_translatable(request: ChatRequest, target: str) -> None:
    """Before encoding for another dialect: a 400 naming what only the client's dialect can carry."""
    items = request.extra.get(UNTRANSLATABLE)
    if items:
        raise bad_request(f"These cannot be sent to a {target} model: {', '.join(items)}.",
                          code="untranslatable_content")


def object_or_none(body: bytes) -> dict[str, Any] | None:
    """An upstream body as a JSON object, or None when it is not one (for reading errors and usage leniently)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def json_instruction(fmt: ResponseFormat) -> str | None:
    """JSON mode for dialects without a response format (Anthropic, Bedrock): a system instruction."""
    if fmt.type == "json_object":
        return "Respond with a single JSON object and nothing else."
    if fmt.type == "json_schema":
        return ("Respond with a single JSON object that conforms to this JSON Schema, and nothing else:\n"
                + orjson.dumps(fmt.schema or {}).decode())
    return None
