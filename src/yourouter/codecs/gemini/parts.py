"""Gemini parts <-> IR parts, and the tool-call id scheme that carries Gemini's ids and signatures.

Tool-call ids. Gemini links a `functionResponse` to its call by function name (an `id` is optional and usually
absent) and attaches a `thoughtSignature` that must travel back with the call; OpenAI and Anthropic clients need
an id on every call and have nowhere to keep the signature. So every decoded `functionCall` gets the IR id
`call_<tag>_<n>[_i<hex of Gemini's id>][_s<signature>|_t<signature>]`: `tag` is the turn index (requests) or a token
of the response id, `n` the call's position in its turn; `_s` holds a standard-base64 signature in the URL-safe
alphabet without padding, `_t` any other signature as unpadded base64url of its UTF-8. Only [A-Za-z0-9_-] is used,
so Anthropic accepts the id, and `encode_*` recovers Gemini's id and the exact signature from it. Only ids Gemini
minted are sent back to Gemini; another dialect's ids never reach it.

Thought signatures of `thought` parts (and of plain text parts) become `Thinking.signature` behind the
`gemini:` prefix, so only Gemini signatures are replayed to Gemini.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
import secrets
from typing import Any

import orjson

from yourouter.codecs.common import arguments_object, arguments_text, as_dict, as_list, parse_data_url, refuse
from yourouter.ir.chat import (
    Document,
    Image,
    Part,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    Unknown,
)
from yourouter.ir.errors import bad_request

DIALECT = "gemini"
TARGET = "Gemini"
SIGNATURE_PREFIX = "gemini:"
#: URIs Gemini reads itself (`fileData.fileUri`); any other URL must be sent inline.
FILE_URI_PREFIXES = ("gs://", "https://generativelanguage.googleapis.com/", "https://www.youtube.com/",
                     "https://youtube.com/", "https://youtu.be/")

_CALL_ID = re.compile(r"call_[A-Za-z0-9]+_\d+(?:_i(?P<gid>(?:[0-9a-f]{2})+))?(?:_(?P<mode>[st])(?P<sig>[\w-]+))?",
                      re.ASCII)
_STANDARD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_TAG_CHARS = re.compile(r"[^A-Za-z0-9]")
_PART_META = frozenset({"thought", "thoughtSignature"})


# Field names: the API takes camelCase and the proto's snake_case -------------------------------------------------

def _camel(key: str) -> str:
    if "_" not in key or key.startswith("_"):
        return key
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def fields(value: Any, where: str) -> dict[str, Any]:
    """An object's fields under their camelCase names (the camelCase spelling wins when both are given)."""
    raw = as_dict(value, where)
    out = {_camel(key): item for key, item in raw.items() if "_" in key}
    out.update((key, item) for key, item in raw.items() if "_" not in key)
    return out


# Tool-call ids ------------------------------------------------------------------------------------------------------

def _pack_signature(signature: str) -> str:
    if len(signature) % 4 == 0 and _STANDARD_B64.fullmatch(signature):
        return "s" + signature.rstrip("=").replace("+", "-").replace("/", "_")
    return "t" + base64.urlsafe_b64encode(signature.encode()).decode().rstrip("=")


def call_id(tag: str, n: int, gemini_id: str | None = None, signature: str | None = None) -> str:
    out = f"call_{tag}_{n}"
    if gemini_id:
        out += "_i" + gemini_id.encode().hex()
    if signature:
        out += "_" + _pack_signature(signature)
    return out


def parse_call_id(value: str) -> tuple[str | None, str | None]:
    """(Gemini's own call id, thought signature) embedded in an id from `call_id`; (None, None) for other ids."""
    match = _CALL_ID.fullmatch(value)
    if match is None:
        return None, None
    gemini_id = signature = None
    if match["gid"]:
        try:
            gemini_id = bytes.fromhex(match["gid"]).decode()
        except UnicodeDecodeError:
            gemini_id = None
    payload = match["sig"]
    if payload and match["mode"] == "s" and len(payload) % 4 != 1:
        signature = payload.replace("-", "+").replace("_", "/") + "=" * (-len(payload) % 4)
    elif payload and match["mode"] == "t":
        try:
            signature = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            signature = None
    return gemini_id, signature


def response_tag(response_id: str, candidate: int = 0) -> str:
    """The `tag` of ids synthesized for a response: unique per response, so ids never repeat in a conversation."""
    tag = _TAG_CHARS.sub("", response_id)[:24] or secrets.token_hex(6)
    return f"{tag}c{candidate}" if candidate else tag


class CallLinks:
    """Ids for decoded `functionCall` parts, and the link from each `functionResponse` back to its call: by Gemini's
    id when it names a known call, else the first unanswered call of that name in the latest model turn, else the
    latest call of that name."""

    def __init__(self) -> None:
        self._pending: dict[str, list[str]] = {}
        self._last: dict[str, str] = {}
        self._by_gemini_id: dict[str, str] = {}

    def model_turn(self) -> None:
        self._pending = {}

    def call(self, tag: str, n: int, name: str, gemini_id: str | None, signature: str | None) -> str:
        ir_id = call_id(tag, n, gemini_id, signature)
        self._pending.setdefault(name, []).append(ir_id)
        self._last[name] = ir_id
        if gemini_id:
            self._by_gemini_id[gemini_id] = ir_id
        return ir_id

    def result(self, name: str, gemini_id: str | None, fallback: str) -> str:
        queue = self._pending.get(name, [])
        if gemini_id and gemini_id in self._by_gemini_id:
            ir_id = self._by_gemini_id[gemini_id]
            if ir_id in queue:
                queue.remove(ir_id)
            return ir_id
        if queue:
            return queue.pop(0)
        return self._last.get(name, fallback)


# Parts: decode ------------------------------------------------------------------------------------------------------

def _signature_in(part: dict[str, Any], where: str) -> str | None:
    value = part.get("thoughtSignature")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad_request(f"`{where}.thoughtSignature` must be a base64 string.", param=f"{where}.thoughtSignature")
    return value


def _string(value: Any, where: str, required: bool = True) -> str:
    if isinstance(value, str) and (value or not required):
        return value
    raise bad_request(f"`{where}` must be a {'non-empty ' if required else ''}string.", param=where)


def _blob(part: dict[str, Any], key: str, where: str) -> Image | Document:
    blob = fields(part[key], f"{where}.{key}")
    mime = str(blob.get("mimeType") or "")
    if key == "inlineData":
        data = _string(blob.get("data"), f"{where}.inlineData.data")
        mime = mime or "application/octet-stream"
        return Image(data=data, media_type=mime) if mime.startswith("image/") else Document(mime, data=data)
    uri = _string(blob.get("fileUri"), f"{where}.fileData.fileUri")
    if mime.startswith("image/"):
        return Image(url=uri, media_type=mime)
    return Document(mime or mimetypes.guess_type(uri)[0] or "application/octet-stream", url=uri)


class PartDecoder:
    """Decodes the parts of one request or response, synthesizing call ids through shared `CallLinks`."""

    def __init__(self, links: CallLinks, untranslatable: list[str]) -> None:
        self.links = links
        self.untranslatable = untranslatable

    def parts(self, raw_parts: Any, where: str, tag: str) -> list[Part]:
        out: list[Part] = []
        calls = 0
        for index, raw in enumerate(as_list(raw_parts if raw_parts is not None else [], f"{where}.parts")):
            at = f"{where}.parts[{index}]"
            part = fields(raw, at)
            data = [key for key in part if key not in _PART_META and part[key] is not None]
            signature = _signature_in(part, at)
            if data == ["text"] or not data and (part.get("thought") or signature):
                text = _string(part.get("text", ""), f"{at}.text", required=False)
                marked = SIGNATURE_PREFIX + signature if signature else None
                if part.get("thought"):
                    out.append(Thinking(text, signature=marked))
                    continue
                if marked:  # a signature on visible text: kept on an empty thought just before it
                    out.append(Thinking("", signature=marked))
                if text:
                    out.append(Text(text))
            elif data in (["inlineData"], ["fileData"]):
                out.append(_blob(part, data[0], at))
            elif data == ["functionCall"]:
                call = fields(part["functionCall"], f"{at}.functionCall")
                name = _string(call.get("name"), f"{at}.functionCall.name")
                args = call.get("args")
                if args is not None and not isinstance(args, dict):
                    raise bad_request(f"`{at}.functionCall.args` must be an object.", param=f"{at}.functionCall.args")
                gemini_id = call.get("id") if isinstance(call.get("id"), str) else None
                ir_id = self.links.call(tag, calls, name, gemini_id, signature)
                calls += 1
                out.append(ToolCall(id=ir_id, name=name, arguments=arguments_text(args or {}), signature=signature))
            elif data == ["functionResponse"]:
                out.append(self._result(part, at, tag, index))
            elif data:
                kind = "+".join(data)
                self.untranslatable.append(f"{at} ({kind})")
                out.append(Unknown(DIALECT, kind, raw))
        return out

    def _result(self, part: dict[str, Any], at: str, tag: str, index: int) -> ToolResult:
        result = fields(part["functionResponse"], f"{at}.functionResponse")
        name = _string(result.get("name"), f"{at}.functionResponse.name")
        response = result.get("response")
        if response is None:
            response = {}
        if not isinstance(response, dict):
            raise bad_request(f"`{at}.functionResponse.response` must be an object.",
                              param=f"{at}.functionResponse.response")
        gemini_id = result.get("id") if isinstance(result.get("id"), str) else None
        content: list[Text | Image] = [Text(orjson.dumps(response).decode())]
        for position, inner in enumerate(as_list(result.get("parts") or [], f"{at}.functionResponse.parts")):
            inner_at = f"{at}.functionResponse.parts[{position}]"
            blob = fields(inner, inner_at)
            if blob.get("inlineData") is not None:
                decoded = _blob(blob, "inlineData", inner_at)
                if isinstance(decoded, Image):
                    content.append(decoded)
                    continue
            self.untranslatable.append(inner_at)
        return ToolResult(call_id=self.links.result(name, gemini_id, fallback=f"call_{tag}_r{index}"),
                          content=tuple(content), name=name, is_error=set(response) == {"error"})


# Parts: encode ------------------------------------------------------------------------------------------------------

def is_file_uri(url: str) -> bool:
    return url.startswith(FILE_URI_PREFIXES)


def needs_inline(image: Image | Document) -> bool:
    """True for a URL this dialect cannot pass by reference: the pipeline fetches it (SSRF-guarded) and inlines it
    before `encode_request`."""
    return image.data is None and image.url is not None and not image.url.startswith("data:") and not is_file_uri(
        image.url)


def _media(part: Image | Document, where: str) -> dict[str, Any]:
    media = part.media_type
    if part.data:
        if not media:
            raise bad_request(f"{where}: inline data without a media type cannot be sent to a Gemini model.",
                              param=where)
        return {"inlineData": {"mimeType": media, "data": part.data}}
    url = part.url or ""
    if url.startswith("data:"):
        inline = parse_data_url(url)
        if inline is not None:
            return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    if not is_file_uri(url):
        raise bad_request(f"{where}: Gemini models cannot fetch `{url[:100]}`; send the file inline or as a "
                          "gs:// or Gemini Files API URI.", param=where, code="untranslatable_content")
    file: dict[str, Any] = {"fileUri": url}
    if media := media or mimetypes.guess_type(url)[0]:
        file["mimeType"] = media
    return {"fileData": file}


def function_call(call_ir_id: str, name: str, arguments: str, signature: str | None) -> dict[str, Any]:
    """A `functionCall` part; Gemini's own id and the signature come back out of the IR id when not given."""
    gemini_id, embedded = parse_call_id(call_ir_id)
    call: dict[str, Any] = {"name": name, "args": arguments_object(arguments)}
    if gemini_id:
        call["id"] = gemini_id
    part: dict[str, Any] = {"functionCall": call}
    if signature := signature or embedded:
        part["thoughtSignature"] = signature
    return part


def own_signature(signature: str | None) -> str | None:
    """A Thinking signature this codec made (`gemini:`-prefixed), unprefixed; None for any other dialect's."""
    if signature and signature.startswith(SIGNATURE_PREFIX) and len(signature) > len(SIGNATURE_PREFIX):
        return signature[len(SIGNATURE_PREFIX):]
    return None


def _response_object(part: ToolResult) -> dict[str, Any]:
    text = "".join(item.text for item in part.content if isinstance(item, Text))
    try:
        value = orjson.loads(text) if text.lstrip().startswith("{") else None
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return {"error": value} if part.is_error and "error" not in value else value
    return {"error": text} if part.is_error else {"output": text}


class PartEncoder:
    """Encodes the parts of turns in order, remembering each call's name so results can be linked by name."""

    def __init__(self, response: bool = False, show_thoughts: bool = False) -> None:
        self.names: dict[str, str] = {}
        self.response = response
        #: A response for a client that asked for thought summaries (`includeThoughts`); signatures travel anyway.
        self.show_thoughts = show_thoughts

    def parts(self, parts: tuple[Part, ...], role: str, where: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        pending: str | None = None  # a signature waiting for the visible text it was minted on
        for part in parts:
            if pending is not None and not isinstance(part, Text):
                out.append({"text": "", "thought": True, "thoughtSignature": pending})
                pending = None
            if isinstance(part, Text):
                if part.text or pending:
                    out.append({"text": part.text, **({"thoughtSignature": pending} if pending else {})})
                pending = None
            elif isinstance(part, Thinking):
                if part.redacted or role != "assistant":
                    continue
                signature = own_signature(part.signature)
                # to Gemini only signed thoughts are worth replaying; to a client, thoughts it asked for
                if part.text and (self.show_thoughts if self.response else signature is not None):
                    out.append({"text": part.text, "thought": True,
                                **({"thoughtSignature": signature} if signature else {})})
                elif signature:
                    pending = signature
            elif isinstance(part, Image | Document):
                out.append(_media(part, where))
            elif isinstance(part, ToolCall):
                self.names[part.id] = part.name
                out.append(function_call(part.id, part.name, part.arguments, part.signature))
            elif isinstance(part, ToolResult):
                out.extend(self._result(part, where))
            elif isinstance(part, Unknown) and part.dialect == DIALECT:
                out.append(dict(part.raw))
            else:
                refuse(part, TARGET, where)
        if pending is not None:
            out.append({"text": "", "thought": True, "thoughtSignature": pending})
        return out

    def _result(self, part: ToolResult, where: str) -> list[dict[str, Any]]:
        name = part.name or self.names.get(part.call_id)
        if not name:
            raise bad_request(f"{where}: the tool result for `{part.call_id}` names no function and answers no "
                              "earlier tool call; Gemini links results by function name.", param=where)
        result: dict[str, Any] = {"name": name, "response": _response_object(part)}
        gemini_id, _ = parse_call_id(part.call_id)
        if gemini_id:
            result["id"] = gemini_id
        # images of a result follow it as parts of the same turn (every Gemini model reads those)
        images = [_media(item, where) for item in part.content if isinstance(item, Image)]
        return [{"functionResponse": result}, *images]
