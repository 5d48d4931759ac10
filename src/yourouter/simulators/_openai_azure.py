"""Azure OpenAI's data plane, served by the OpenAI simulator: what differs from OpenAI, as pure functions.

Paths: `POST /openai/deployments/{deployment-id}/chat/completions` and `/embeddings`, with a required
`api-version` query parameter; the key in `api-key` (or a bearer token in `Authorization`). The deployment is the
model: a body's `model` is ignored and the response names the deployment. What Azure answers, as seen on the wire
(MicrosoftDocs/azure-docs#114602, Azure REST API specs `inference/stable/2024-10-21`, and error bodies quoted in
client issues):

- no `api-version`, or any other path or method under `/openai/`: 404 `{"error": {"code": "404", "message":
  "Resource not found"}}`; a malformed `api-version`: 400 `{"error": {"code": "BadRequest", "message": "API version
  not supported"}}`;
- a missing or wrong key: 401 with Azure's "Access denied due to invalid subscription key ..." message;
- 429: Azure's quota message ("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version ...");
  other errors (validation, 5xx) keep OpenAI's envelope, which Azure passes through from the model;
- chat completions carry `prompt_filter_results` and per-choice `content_filter_results` (all "safe"); a stream
  opens with an annotation-only chunk (`"id": ""`, `"object": ""`, `"created": 0`, `"choices": []`).

Any deployment name is served (like any model on the OpenAI paths); a real resource answers 404
`DeploymentNotFound` for names it has no deployment for.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ._asgi import Headers

PREFIX = "/openai/"
_PATH = re.compile(r"/openai/deployments/([^/]+)/(chat/completions|embeddings)")
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
_OPERATIONS = {"chat/completions": "ChatCompletions_Create", "embeddings": "Embeddings_Create"}
_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource."
)
_SAFE = {"filtered": False, "severity": "safe"}
_NOT_DETECTED = {"filtered": False, "detected": False}
_HARM = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": {**_HARM, "jailbreak": _NOT_DETECTED}}]
CHOICE_FILTER_RESULTS = {**_HARM, "protected_material_code": _NOT_DETECTED, "protected_material_text": _NOT_DETECTED}


class AzureError(Exception):
    """An error Azure answers in its own envelope, `{"error": {"code", "message"}}`, not OpenAI's."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or str(status)
        self.message = message

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True)
class AzureCall:
    """One request to a deployment: which deployment, which operation, under which API version."""

    deployment: str
    operation: str  # "chat/completions" or "embeddings"
    api_version: str

    @classmethod
    def parse(cls, method: str, path: str, query: bytes) -> AzureCall:
        """Match an `/openai/...` request, or raise what Azure answers to a wrong path, method or version."""
        match = _PATH.fullmatch(path)
        versions = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("api-version")
        if match is None or method != "POST" or not versions or not versions[0]:
            raise AzureError(404, "Resource not found")
        if not _API_VERSION.fullmatch(versions[0]):
            raise AzureError(400, "API version not supported", code="BadRequest")
        return cls(deployment=match[1], operation=match[2], api_version=versions[0])

    @property
    def route(self) -> str:
        """The OpenAI route serving this operation."""
        return "/" + self.operation

    def rate_limited(self, retry_after: float | None) -> AzureError:
        message = (f"Requests to the {_OPERATIONS[self.operation]} Operation under Azure OpenAI API version "
                   f"{self.api_version} have exceeded token rate limit of your current OpenAI S0 pricing tier.")
        if retry_after is not None:
            message += f" Please retry after {retry_after:g} seconds."
        message += (" Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the "
                    "default rate limit.")
        return AzureError(429, message)


def authenticate(headers: Mapping[str, str], api_key: str | None) -> None:
    """Azure takes the key in `api-key`, or a token in `Authorization: Bearer`; anything else is a 401."""
    if api_key is None:
        return
    if "api-key" in headers:
        offered = headers["api-key"]
    else:
        scheme, _, offered = headers.get("authorization", "").partition(" ")
        offered = offered.strip() if scheme.lower() == "bearer" else ""
    if offered != api_key:
        raise AzureError(401, _DENIED)


def response_headers(rng: random.Random) -> Headers:
    request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
    return [(b"x-request-id", request_id), (b"apim-request-id", request_id), (b"x-ms-region", b"Simulated"),
            (b"x-ms-rai-invoked", b"true")]


def annotate_completion(payload: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` as Azure sends it: content filter results for the prompt and for each choice."""
    choices = [{**choice, "content_filter_results": CHOICE_FILTER_RESULTS if choice["message"].get("content") else {}}
               for choice in payload["choices"]]
    return {**payload, "choices": choices, "prompt_filter_results": PROMPT_FILTER_RESULTS}


def annotate_chunks(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A chunk sequence as Azure streams it: the prompt's filter results first, in a chunk of their own, then each
    content delta with its filter results (an empty object on role, tool call and finish deltas)."""
    opening: dict[str, Any] = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                               "prompt_filter_results": PROMPT_FILTER_RESULTS}
    annotated = [{**chunk, "choices": [
        {**choice, "content_filter_results": _HARM if choice["delta"].get("content") else {}}
        for choice in chunk["choices"]]} for chunk in chunks]
    return [opening, *annotated]
