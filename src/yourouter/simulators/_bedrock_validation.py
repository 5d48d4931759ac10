"""Request checks of the Bedrock simulator: the Converse body against botocore's own service model (types, required
members, unions with exactly one member, enums, lengths and ranges, unknown members refused), then the rules the
service adds (turn order, tool blocks, blank text), and SigV4 signatures recomputed with botocore.

Messages follow Bedrock's: shape errors in the AWS validation style (`1 validation error detected: Value ... at
'path' failed to satisfy constraint: ...`), rule errors worded as the service words them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from ._openai_validation import RequestError

OPERATION_INPUT = "ConverseRequest"
_URI_MEMBERS = frozenset({"modelId"})  # in the path, not the body
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
                   r"/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?Signature=(?P<signature>[0-9a-f]{64})$")
_MAX_SKEW = dt.timedelta(minutes=5)


class AwsError(RequestError):
    """An error answered as `{"message": ...}` with `x-amzn-ErrorType: <error_type>`."""

    def __init__(self, error_type: str, message: str, status: int = 400) -> None:
        super().__init__(message, status=status, code=error_type)
        self.error_type = error_type


@cache
def _shapes() -> dict[str, Any]:
    import botocore.loaders

    model: dict[str, Any] = botocore.loaders.Loader().load_service_model("bedrock-runtime", "service-2")
    shapes: dict[str, Any] = model["shapes"]
    return shapes


@cache
def _pattern(source: str | None) -> re.Pattern[str] | None:
    """The model's patterns are Java regular expressions; the few Python cannot compile are not checked."""
    if not source:
        return None
    try:
        return re.compile(source)
    except re.error:
        return None


def _invalid(path: str, value: Any, constraint: str) -> AwsError:
    shown = "null" if value is None else str(value)[:80]
    return AwsError("ValidationException", f"1 validation error detected: Value '{shown}' at '{path}' failed to "
                                           f"satisfy constraint: {constraint}")


def _check(value: Any, shape_name: str, path: str) -> None:
    shape = _shapes()[shape_name]
    kind = shape["type"]
    if shape.get("document"):
        return  # a free-form JSON document
    if kind == "structure":
        _structure(value, shape, path)
    elif kind == "list":
        if not isinstance(value, list):
            raise _invalid(path, value, "Member must be a list")
        _bounds(len(value), shape, path, value, "have length")
        for index, item in enumerate(value):
            _check(item, shape["member"]["shape"], f"{path}.{index}" if path else str(index))
    elif kind == "map":
        if not isinstance(value, dict):
            raise _invalid(path, value, "Member must be a map")
        for key, item in value.items():
            _check(item, shape["value"]["shape"], f"{path}.{key}")
    elif kind == "string":
        if not isinstance(value, str):
            raise _invalid(path, value, "Member must be a string")
        if shape.get("enum") and value not in shape["enum"]:
            raise _invalid(path, value, f"Member must satisfy enum value set: [{', '.join(shape['enum'])}]")
        _bounds(len(value), shape, path, value, "have length")
        pattern = _pattern(shape.get("pattern"))
        if pattern is not None and not pattern.search(value):
            raise _invalid(path, value, f"Member must satisfy regular expression pattern: {shape['pattern']}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(path, value, "Member must be an integer")
        _bounds(value, shape, path, value, "have value")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(path, value, "Member must be a number")
        _bounds(value, shape, path, value, "have value")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _invalid(path, value, "Member must be a boolean")
    elif kind == "blob":
        if not isinstance(value, str):
            raise _invalid(path, value, "Member must be base64-encoded bytes")
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(path, value, "Member must be valid base64") from None
        _bounds(len(decoded), shape, path, "<bytes>", "have length")


def _structure(value: Any, shape: dict[str, Any], path: str) -> None:
    if not isinstance(value, dict):
        raise _invalid(path, value, "Member must be an object")
    members: dict[str, Any] = shape["members"]
    for name in value:
        if name not in members or (not path and name in _URI_MEMBERS):
            where = f"{path}.{name}" if path else name
            raise AwsError("ValidationException", f"Malformed input request: extraneous key [{where}] is not "
                                                  "permitted, please reformat your input and try again.")
    for name in shape.get("required", []):
        if value.get(name) is None and not (not path and name in _URI_MEMBERS):
            raise _invalid(f"{path}.{name}" if path else name, None, "Member must not be null")
    present = [name for name, item in value.items() if item is not None]
    if shape.get("union") and len(present) != 1:
        raise AwsError("ValidationException", f"Invalid input at '{path or 'request'}': exactly one of "
                                              f"{', '.join(members)} must be set (got {len(present)}).")
    for name in present:
        _check(value[name], members[name]["shape"], f"{path}.{name}" if path else name)


def _bounds(measure: float, shape: dict[str, Any], path: str, value: Any, what: str) -> None:
    low, high = shape.get("min"), shape.get("max")
    if low is not None and measure < low:
        raise _invalid(path, value, f"Member must {what} greater than or equal to {low}")
    if high is not None and measure > high:
        raise _invalid(path, value, f"Member must {what} less than or equal to {high}")


def validate_converse(body: Mapping[str, Any]) -> None:
    """The whole request: shape first, then the service's rules."""
    _check(dict(body), OPERATION_INPUT, "")
    messages = body.get("messages")
    if not messages:
        raise AwsError("ValidationException", "A conversation must start with a user message. Try again with a "
                                              "conversation that starts with a user message.")
    uses_tools = any("toolUse" in block or "toolResult" in block for m in messages for block in m["content"])
    if uses_tools and not body.get("toolConfig"):
        raise AwsError("ValidationException", "The toolConfig field must be defined when using toolUse and "
                                              "toolResult content blocks.")
    _turns(messages)
    for index, tool in enumerate((body.get("toolConfig") or {}).get("tools") or []):
        schema = ((tool.get("toolSpec") or {}).get("inputSchema") or {}).get("json", {})
        if "toolSpec" in tool and not isinstance(schema, dict):
            raise AwsError("ValidationException", f"The format of the value at toolConfig.tools.{index}.toolSpec."
                                                  "inputSchema.json is invalid. Provide a json object for the field "
                                                  "and try again.")
    for index, block in enumerate(body.get("system") or []):
        if "text" in block and not block["text"].strip():
            raise AwsError("ValidationException", f"The text field in the SystemContentBlock object at system.{index}"
                                                  " is blank. Add text to the text field, and try again.")


def _turns(messages: list[dict[str, Any]]) -> None:
    if messages[0]["role"] != "user":
        raise AwsError("ValidationException", "A conversation must start with a user message. Try again with a "
                                              "conversation that starts with a user message.")
    previous_uses: set[str] = set()
    for position, message in enumerate(messages):
        role = message["role"]
        if role == "system":
            raise AwsError("ValidationException", f"messages.{position}.role: the system role is not allowed in "
                                                  "messages; use the system field.")
        if position and messages[position - 1]["role"] == role:
            raise AwsError("ValidationException", "A conversation must alternate between user and assistant roles. "
                                                  "Make sure the conversation alternates between user and assistant "
                                                  "roles and try again.")
        if not message["content"]:
            raise AwsError("ValidationException", f"The content field in the Message object at messages.{position} "
                                                  "is empty. Add a ContentBlock object to the content field and try "
                                                  "again.")
        for index, block in enumerate(message["content"]):
            if "text" in block and not block["text"].strip():
                raise AwsError("ValidationException", f"The text field in the ContentBlock object at messages."
                                                      f"{position}.content.{index} is blank. Add text to the text "
                                                      "field, and try again.")
            if role == "assistant" and "toolResult" in block or role == "user" and "toolUse" in block:
                raise AwsError("ValidationException", f"messages.{position}.content.{index}: a {role} message "
                                                      "cannot contain this content block.")
        results = [b["toolResult"]["toolUseId"] for b in message["content"] if "toolResult" in b]
        unknown = [r for r in results if r not in previous_uses]
        if unknown:
            raise AwsError("ValidationException", f"The toolResult blocks at messages.{position}.content contain "
                                                  f"toolUseId {unknown[0]} that does not match any toolUse block of "
                                                  "the previous turn.")
        if role == "assistant":
            previous_uses = {b["toolUse"]["toolUseId"] for b in message["content"] if "toolUse" in b}
            if position + 1 < len(messages) and previous_uses:
                answered = {b["toolResult"]["toolUseId"] for b in messages[position + 1]["content"]
                            if "toolResult" in b}
                if answered != previous_uses:
                    raise AwsError("ValidationException", f"Expected toolResult blocks at messages.{position + 1}."
                                                          "content for the following Ids: "
                                                          f"{', '.join(sorted(previous_uses - answered))}")


# Signatures -----------------------------------------------------------------------------------------------------

def verify_sigv4(method: str, url: str, headers: Mapping[str, str], body: bytes, secrets: Mapping[str, str],
                 now: dt.datetime | None = None) -> str:
    """Recompute the request's SigV4 signature with botocore; returns the access key id, or raises 403s worded as
    AWS words them."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    authorization = headers.get("authorization", "")
    if not authorization:
        raise AwsError("MissingAuthenticationTokenException", "Missing Authentication Token", status=403)
    found = _AUTH.match(authorization)
    if found is None:
        raise AwsError("IncompleteSignatureException", "Authorization header requires 'Credential', "
                                                       "'Signature' and 'SignedHeaders' parameters.", status=403)
    key_id = found.group("key")
    if key_id not in secrets:
        raise AwsError("UnrecognizedClientException", "The security token included in the request is invalid.",
                       status=403)
    stamp = headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AwsError("IncompleteSignatureException", "Date must be in ISO-8601 'basic format'. Got "
                                                       f"'{stamp}'.", status=403) from None
    current = now or dt.datetime.now(dt.UTC)
    if abs(current - when) > _MAX_SKEW:
        raise AwsError("InvalidSignatureException", f"Signature expired: {stamp} is now earlier than "
                                                    f"{(current - _MAX_SKEW).strftime('%Y%m%dT%H%M%SZ')}.", status=403)
    signed = {name: headers[name] for name in found.group("signed").split(";") if name in headers}
    request = AWSRequest(method=method, url=url, data=body, headers=signed)
    request.context["timestamp"] = stamp
    auth = SigV4Auth(Credentials(key_id, secrets[key_id]), found.group("service"), found.group("region"))
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if not hmac.compare_digest(expected, found.group("signature")) or found.group("service") != "bedrock":
        raise AwsError("InvalidSignatureException", "The request signature we calculated does not match the "
                                                    "signature you provided. Check your AWS Secret Access Key and "
                                                    "signing method. Consult the service documentation for details.",
                       status=403)
    return key_id
