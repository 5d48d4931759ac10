"""`type: ark` (vendors `volcengine`, `byteplus`): BytePlus ModelArk / Volcengine Ark. Chat and embeddings speak
OpenAI's wire format under `/api/v3`; video generation is Ark's task API (`/contents/generations/tasks`). The base
URL is the one the Ark SDK takes, e.g. `https://ark.ap-southeast.bytepluses.com/api/v3`."""

from __future__ import annotations

from yourouter.config.schema import ProviderConfig
from yourouter.providers.base import CHAT, EMBEDDINGS, VIDEO_TASKS, HttpProvider


class ArkProvider(HttpProvider):
    dialect = "openai"

    def __init__(self, config: ProviderConfig) -> None:
        base = config.base_url
        auth = {"Authorization": "Bearer " + config.api_key} if config.api_key else {}
        super().__init__(config, {CHAT: base + "/chat/completions", EMBEDDINGS: base + "/embeddings",
                                  VIDEO_TASKS: base + "/contents/generations/tasks"}, auth)

    def task_url(self, task_id: str) -> str:
        from urllib.parse import quote

        return f"{self._urls[VIDEO_TASKS]}/{quote(task_id, safe='-_.~')}"
