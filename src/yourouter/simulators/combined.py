"""All simulators behind one port, as `yourouter simulate` serves them: OpenAI (`/v1/chat/completions`,
`/v1/embeddings`, `/v1/models`), Anthropic (`/v1/messages`, and `/v1/models` when `anthropic-version` is sent),
Gemini (`/{version}/.../models/{model}:method`), Bedrock (`/model/{modelId}/converse[-stream]`), Ark video
tasks (`/api/v3/contents/generations/tasks[/{id}]`), and web search: Google Custom Search (`/customsearch/v1[...]`),
Brave (`/res/v1/web/search`, `/res/v1/images/search`) and SearXNG (`/search`).

Control endpoints (`/_sim/faults`, `/_sim/requests`): POST and DELETE go to every simulator; GET lists each
simulator's state under its name. `/_sim/{openai,anthropic,gemini,bedrock,ark,google-search,brave,searxng}/...`
address one (Ark's callback log: `/_sim/ark/callbacks`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import MutableMapping
from typing import Any

import orjson
import uvicorn

from yourouter.simulators._asgi import ASGIApp, Receive, Scope, Send
from yourouter.simulators.anthropic import create_app as create_anthropic
from yourouter.simulators.ark import TASKS_PATH, ArkSettings
from yourouter.simulators.ark import create_app as create_ark
from yourouter.simulators.bedrock import create_app as create_bedrock
from yourouter.simulators.brave import create_app as create_brave
from yourouter.simulators.gemini import create_app as create_gemini
from yourouter.simulators.google_search import create_app as create_google_search
from yourouter.simulators.openai import SimulatorSettings
from yourouter.simulators.openai import create_app as create_openai
from yourouter.simulators.searxng import create_app as create_searxng

_GEMINI_METHODS = (":generateContent", ":streamGenerateContent", ":countTokens", ":embedContent",
                   ":batchEmbedContents", ":predict")


class CombinedSimulator:
    def __init__(self, settings: SimulatorSettings, ark: ArkSettings | None = None) -> None:
        self.apps: dict[str, ASGIApp] = {"openai": create_openai(settings), "anthropic": create_anthropic(settings),
                                         "gemini": create_gemini(settings), "bedrock": create_bedrock(settings),
                                         "ark": create_ark(settings, ark),
                                         "google-search": create_google_search(settings),
                                         "brave": create_brave(settings), "searxng": create_searxng(settings)}

    def _pick(self, scope: Scope) -> ASGIApp:
        path: str = scope["path"]
        if path.startswith("/customsearch/"):
            return self.apps["google-search"]
        if path.startswith("/res/v1/"):
            return self.apps["brave"]
        if path.rstrip("/") == "/search":
            return self.apps["searxng"]
        if path.startswith("/model/"):
            return self.apps["bedrock"]
        if path.startswith(TASKS_PATH):
            return self.apps["ark"]
        if (any(method in path for method in _GEMINI_METHODS) or path.startswith(("/v1beta/", "/v1beta1/"))
                or "/publishers/" in path):
            return self.apps["gemini"]
        if "/messages" in path:
            return self.apps["anthropic"]
        if path.rstrip("/").endswith("/models") or "/models/" in path:
            headers = dict(scope.get("headers") or [])
            if b"anthropic-version" in headers:
                return self.apps["anthropic"]
            if b"x-goog-api-key" in headers or b"key=" in scope.get("query_string", b""):
                return self.apps["gemini"]
        return self.apps["openai"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith("/_sim/"):
            await self._control(scope, receive, send)
            return
        await self._pick(scope)(scope, receive, send)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        rest = scope["path"][len("/_sim/"):]
        name, _, tail = rest.partition("/")
        if name in self.apps:
            await self.apps[name]({**scope, "path": "/_sim/" + tail}, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        results: dict[str, Any] = {}
        for app_name, app in self.apps.items():
            results[app_name] = await _call(app, {**scope}, body)
        status = max(int(r["status"]) for r in results.values())
        payload = {app_name: r["json"] for app_name, r in results.items()}
        data = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


async def _call(app: ASGIApp, scope: Scope, body: bytes) -> dict[str, Any]:
    sent: dict[str, Any] = {"status": 500, "body": b""}
    delivered = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
        elif message["type"] == "http.response.body":
            sent["body"] += message.get("body", b"")

    await app(scope, receive, send)
    try:
        sent["json"] = orjson.loads(sent["body"]) if sent["body"] else None
    except orjson.JSONDecodeError:
        sent["json"] = sent["body"].decode(errors="replace")
    return sent


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(settings: SimulatorSettings, ark: ArkSettings | None = None) -> CombinedSimulator:
    return CombinedSimulator(settings, ark)


def run(settings: SimulatorSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    uvicorn.run(create_app(settings), host=host, port=port,
                loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio", http="httptools",
                access_log=False, log_level="warning")
