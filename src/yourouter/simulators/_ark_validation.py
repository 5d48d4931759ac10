"""Request validation for the Ark video-generation task simulator, with Ark's error codes.

Pure functions: `validate_create` turns a `POST /contents/generations/tasks` body into a `TaskSpec` (inline
`--name value` text commands merged with the top-level fields, which win when both are given), and
`parse_list_query` reads the list endpoint's query string. Every failure raises `ArkError`, which the app renders
as Ark's envelope `{"error": {"code", "message", "param", "type"}}` with the request id appended to the message.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")
RESOLUTIONS = ("480p", "720p", "1080p")
RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21", "adaptive", "keep_ratio")
FRAME_RATES = (16, 24)
SERVICE_TIERS = ("default", "flex")
IMAGE_ROLES = ("first_frame", "last_frame", "reference_image")
IMAGE_FORMATS = ("jpeg", "jpg", "png", "webp", "bmp", "tiff", "gif")
DURATION_RANGE = (2, 15)  # Seedance 1.0 takes 2-12 s, 2.0 up to 15 s
FRAMES_RANGE = (29, 289)  # and frames = 25 + 4n
SEED_RANGE = (-1, 2**32 - 1)
EXPIRES_RANGE = (3600, 259200)
DEFAULT_EXPIRES_AFTER = 172800
MAX_REFERENCE_IMAGES = 4
PAGE_RANGE = (1, 500)
DEFAULT_PAGE_SIZE = 10

# HTTP status -> Ark's error `type`
ERROR_TYPES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
               429: "TooManyRequests", 500: "InternalServerError"}
MISSING_MESSAGE = "The request failed because it is missing one or multiple required parameters."
TOP_LEVEL_FIELDS = frozenset({
    "model", "content", "callback_url", "return_last_frame", "service_tier", "execution_expires_after",
    "generate_audio", "draft", "resolution", "ratio", "duration", "frames", "seed", "camera_fixed", "watermark",
    "safety_identifier", "priority", "tools", "output_format", "omni_reference_task_type",
})
# inline text command (long and short names) -> the top-level field it sets
COMMANDS = {"resolution": "resolution", "rs": "resolution", "ratio": "ratio", "rt": "ratio",
            "duration": "duration", "dur": "duration", "framespersecond": "framespersecond", "fps": "framespersecond",
            "watermark": "watermark", "wm": "watermark", "seed": "seed", "camerafixed": "camera_fixed",
            "cf": "camera_fixed"}
_T = TypeVar("_T")
_DATA_URL = re.compile(r"^data:image/([a-z]+);base64,(.+)$", re.DOTALL)


class ArkError(Exception):
    """An error answered as Ark's envelope; `message` gets " Request id: ..." appended when rendered."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param

    def envelope(self, request_id: str) -> dict[str, Any]:
        error_type = ERROR_TYPES.get(self.status, "InternalServerError" if self.status >= 500 else "BadRequest")
        return {"error": {"code": self.code, "message": f"{self.message} Request id: {request_id}",
                          "param": self.param or "", "type": error_type}}


def invalid(param: str, detail: str) -> ArkError:
    return ArkError(400, "InvalidParameter", f"The parameter `{param}` specified in the request is not valid: "
                                             f"{detail}.", param)


@dataclass(frozen=True)
class TaskSpec:
    """A validated create request: what the task reports back, plus what drives the simulation."""

    model: str
    prompt: str
    resolution: str | None = None
    ratio: str | None = None
    duration: int | None = None
    frames: int | None = None
    framespersecond: int | None = None
    seed: int | None = None
    watermark: bool | None = None
    camera_fixed: bool | None = None
    callback_url: str | None = None
    return_last_frame: bool = False
    service_tier: str | None = None
    execution_expires_after: int | None = None
    image_to_video: bool = False
    draft_task_id: str | None = None
    # optional fields echoed on the task object only when given (generate_audio, draft, priority, ...)
    extra: dict[str, Any] = field(default_factory=dict)


# Values --------------------------------------------------------------------------------------------------------

def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(param: str, value: object, low: int, high: int) -> int:
    if not _is_int(value):
        raise invalid(param, "must be an integer")
    assert isinstance(value, int)
    if not low <= value <= high:
        raise invalid(param, f"must be in [{low}, {high}]")
    return value


def _check_choice(param: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise invalid(param, f"must be one of {', '.join(choices)}")
    return value


def _check_bool(param: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise invalid(param, "must be a boolean")
    return value


def _check_value(name: str, value: object) -> object:
    """Check one generation parameter, from the body or (already converted) from a text command."""
    if name == "resolution":
        return _check_choice(name, value, RESOLUTIONS)
    if name == "ratio":
        return _check_choice(name, value, RATIOS)
    if name == "duration":
        return _check_int(name, value, *DURATION_RANGE)
    if name == "frames":
        frames = _check_int(name, value, *FRAMES_RANGE)
        if (frames - 25) % 4:
            raise invalid(name, "must be 25 + 4n")
        return frames
    if name == "framespersecond":
        if value not in FRAME_RATES or not _is_int(value):
            raise invalid(name, "must be 16 or 24")
        return value
    if name == "seed":
        return _check_int(name, value, *SEED_RANGE)
    return _check_bool(name, value)  # watermark, camera_fixed


def _command_value(name: str, raw: str) -> object:
    """A text command's string value converted to the type its body field takes."""
    if name in ("duration", "framespersecond", "seed"):
        if not re.fullmatch(r"-?\d+", raw):
            raise invalid(name, f"{raw!r} is not an integer")
        return int(raw)
    if name in ("watermark", "camera_fixed"):
        if raw.lower() not in ("true", "false"):
            raise invalid(name, f"{raw!r} is not true or false")
        return raw.lower() == "true"
    return raw


def parse_commands(text: str) -> tuple[str, dict[str, object]]:
    """Split `a cat --ratio 16:9 --dur 5` into the prompt and validated parameters; unknown `--x` stay in it."""
    words = text.split()
    kept: list[str] = []
    values: dict[str, object] = {}
    index = 0
    while index < len(words):
        word = words[index]
        name = COMMANDS.get(word[2:]) if word.startswith("--") else None
        if name is None:
            kept.append(word)
            index += 1
            continue
        if index + 1 >= len(words):
            raise invalid(name, f"the text command {word} needs a value")
        values[name] = _check_value(name, _command_value(name, words[index + 1]))
        index += 2
    return " ".join(kept), values


def _check_url(param: str, url: object, *, images: bool) -> str:
    if not isinstance(url, str) or not url:
        raise invalid(param, "url must be a non-empty string")
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if not images or match is None or match.group(1) not in IMAGE_FORMATS:
            raise invalid(param, "base64 images must be data:image/<format>;base64,<data> with format one of "
                                 + ", ".join(IMAGE_FORMATS))
        try:
            base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise invalid(param, "the base64 image data is not valid") from None
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(param, "url must be an http(s) URL or a base64 data URL")
    return url


# Content -------------------------------------------------------------------------------------------------------

@dataclass
class _Content:
    text: str | None = None
    image_roles: list[str | None] = field(default_factory=list)
    references: int = 0  # reference videos and audios (Seedance 2.0)
    draft_task_id: str | None = None


def _media_item(item: Mapping[str, Any], kind: str, roles: tuple[str, ...]) -> str | None:
    data = item.get(kind)
    if not isinstance(data, Mapping):
        raise invalid("content", f"an item of type {kind} needs a {kind} object")
    _check_url("content", data.get("url"), images=kind == "image_url")
    role = item.get("role")
    if role is not None and role not in roles:
        raise invalid("content", f"role must be one of {', '.join(roles)}")
    return role if isinstance(role, str) else None


def _read_content(content: object) -> _Content:
    if not isinstance(content, list) or not content:
        raise invalid("content", "must be a non-empty array")
    parsed = _Content()
    for item in content:
        if not isinstance(item, Mapping):
            raise invalid("content", "every item must be an object")
        kind = item.get("type")
        if kind == "text":
            if parsed.text is not None:
                raise invalid("content", "at most one text item is allowed")
            if not isinstance(item.get("text"), str):
                raise invalid("content", "a text item needs a text string")
            parsed.text = item["text"]
        elif kind == "image_url":
            parsed.image_roles.append(_media_item(item, "image_url", IMAGE_ROLES))
        elif kind == "video_url":
            _media_item(item, "video_url", ("reference_video",))
            parsed.references += 1
        elif kind == "audio_url":
            _media_item(item, "audio_url", ("reference_audio",))
            parsed.references += 1
        elif kind == "draft_task":
            draft = item.get("draft_task")
            if not isinstance(draft, Mapping) or not isinstance(draft.get("id"), str) or not draft["id"]:
                raise invalid("content", "a draft_task item needs a draft_task object with an id")
            parsed.draft_task_id = draft["id"]
        else:
            raise invalid("content", f"unsupported content type {kind!r}")
    _check_image_mode(parsed.image_roles)
    if parsed.text is None and not parsed.image_roles and not parsed.references and parsed.draft_task_id is None:
        raise invalid("content", "a text prompt is required for text-to-video")
    return parsed


def _check_image_mode(roles: list[str | None]) -> None:
    """First frame (one image, role optional), first+last frame (explicit roles), or 1-4 reference images."""
    if not roles:
        return
    references = roles.count("reference_image")
    if references:
        if references != len(roles):
            raise invalid("content", "reference images cannot be mixed with first or last frame images")
        if references > MAX_REFERENCE_IMAGES:
            raise invalid("content", f"at most {MAX_REFERENCE_IMAGES} reference images are allowed")
        return
    if len(roles) > 2:
        raise invalid("content", "at most two frame images (first_frame and last_frame) are allowed")
    if len(roles) == 2 and sorted(r or "" for r in roles) != ["first_frame", "last_frame"]:
        raise invalid("content", "first and last frame images need the roles first_frame and last_frame")
    if len(roles) == 1 and roles[0] == "last_frame":
        raise invalid("content", "a last_frame image needs a first_frame image")


# The create body -----------------------------------------------------------------------------------------------

def _optional(body: Mapping[str, Any], name: str) -> Any:
    """A top-level field's value; JSON null means absent (the official SDK sends every field, null when unset)."""
    return body.get(name)


def validate_create(body: Mapping[str, Any]) -> TaskSpec:
    for name in body:
        if name not in TOP_LEVEL_FIELDS:
            raise invalid(name, "unknown parameter")
    for name in ("model", "content"):
        if body.get(name) is None:
            raise ArkError(400, "MissingParameter", MISSING_MESSAGE, name)
    model = body["model"]
    if not isinstance(model, str) or not model.strip():
        raise invalid("model", "must be a non-empty string")
    content = _read_content(body["content"])
    prompt, params = parse_commands(content.text or "")
    for name in ("resolution", "ratio", "duration", "frames", "seed", "watermark", "camera_fixed"):
        if (value := _optional(body, name)) is not None:
            params[name] = _check_value(name, value)  # the body field wins over a text command
    if params.get("duration") is not None and params.get("frames") is not None:
        raise invalid("frames", "duration and frames cannot both be set")
    extra = _extra_fields(body)
    callback_url = _optional(body, "callback_url")
    if callback_url is not None:
        parts = urlsplit(callback_url) if isinstance(callback_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid("callback_url", "must be an http(s) URL")
    expires = _optional(body, "execution_expires_after")
    return TaskSpec(
        model=model,
        prompt=prompt,
        resolution=_as(str, params.get("resolution")),
        ratio=_as(str, params.get("ratio")),
        duration=_as(int, params.get("duration")),
        frames=_as(int, params.get("frames")),
        framespersecond=_as(int, params.get("framespersecond")),
        seed=_as(int, params.get("seed")),
        watermark=_as(bool, params.get("watermark")),
        camera_fixed=_as(bool, params.get("camera_fixed")),
        callback_url=callback_url,
        return_last_frame=bool(_check_optional_bool(body, "return_last_frame")),
        service_tier=(_check_choice("service_tier", _optional(body, "service_tier"), SERVICE_TIERS)
                      if _optional(body, "service_tier") is not None else None),
        execution_expires_after=(_check_int("execution_expires_after", expires, *EXPIRES_RANGE)
                                 if expires is not None else None),
        image_to_video=bool(content.image_roles),
        draft_task_id=content.draft_task_id,
        extra=extra,
    )


def _as(kind: type[_T], value: object) -> _T | None:
    return value if isinstance(value, kind) else None


def _check_optional_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = _optional(body, name)
    return None if value is None else _check_bool(name, value)


def _extra_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Fields the task object echoes when given: generate_audio, draft, safety_identifier, priority, tools, ..."""
    extra: dict[str, Any] = {}
    for name in ("generate_audio", "draft"):
        if (flag := _check_optional_bool(body, name)) is not None:
            extra[name] = flag
    for name in ("safety_identifier", "output_format", "omni_reference_task_type"):
        if (text := _optional(body, name)) is not None:
            if not isinstance(text, str):
                raise invalid(name, "must be a string")
            extra[name] = text
    if (priority := _optional(body, "priority")) is not None:
        if not _is_int(priority):
            raise invalid("priority", "must be an integer")
        extra["priority"] = priority
    if (tools := _optional(body, "tools")) is not None:
        if not isinstance(tools, list) or not all(isinstance(t, Mapping) and isinstance(t.get("type"), str)
                                                  for t in tools):
            raise invalid("tools", "must be an array of objects with a type")
        extra["tools"] = [{"type": t["type"]} for t in tools]
    return extra


# The list query ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListQuery:
    page_num: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    status: str | None = None
    model: str | None = None
    service_tier: str | None = None
    task_ids: tuple[str, ...] = ()


def parse_list_query(query_string: str) -> ListQuery:
    query = parse_qs(query_string, keep_blank_values=True)

    def last(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    pages: dict[str, int] = {}
    for name, default in (("page_num", 1), ("page_size", DEFAULT_PAGE_SIZE)):
        raw = last(name)
        if raw is None:
            pages[name] = default
        elif not raw.isdigit() or not PAGE_RANGE[0] <= int(raw) <= PAGE_RANGE[1]:
            raise invalid(name, f"must be an integer in [{PAGE_RANGE[0]}, {PAGE_RANGE[1]}]")
        else:
            pages[name] = int(raw)
    status = last("filter.status") or None
    if status is not None and status not in STATUSES:
        raise invalid("filter.status", f"must be one of {', '.join(STATUSES)}")
    return ListQuery(page_num=pages["page_num"], page_size=pages["page_size"], status=status,
                     model=last("filter.model") or None, service_tier=last("filter.service_tier") or None,
                     task_ids=tuple(v for v in query.get("filter.task_ids", []) if v))
