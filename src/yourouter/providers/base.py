"""The provider contract: how to address an upstream that speaks one wire protocol."""

from __future__ import annotations

from typing import Protocol

from yourouter.config.schema import ProviderConfig

#: Operations the pipeline asks providers for (dialect-neutral).
CHAT = "chat"
EMBEDDINGS = "embeddings"
COUNT_TOKENS = "count_tokens"
SEARCH = "search"  # web search (Google Custom Search-compatible)
VIDEO_TASKS = "video_tasks"  # Ark's content-generation tasks (create; get, list and delete by task id)


class Provider(Protocol):
    """One configured upstream deployment.

    `dialect` names the codec of its wire format; when it equals the client's dialect the pipeline forwards bodies
    untouched.
    """

    config: ProviderConfig
    dialect: str

    @property
    def name(self) -> str: ...

    @property
    def vendor(self) -> str: ...

    def url(self, operation: str, model: str, stream: bool) -> str:
        """The upstream URL for an operation (`chat`, `embeddings`, `count_tokens`)."""
        ...

    def headers(self, url: str = "", body: bytes = b"") -> dict[str, str]:
        """Request headers carrying the upstream's credentials (never the client's). Providers that sign each
        request (Bedrock's SigV4) need its URL and body."""
        ...

    def supports(self, operation: str) -> bool: ...


class HttpProvider:
    """What every adapter shares: its config, fixed URLs per operation, and precomputed headers."""

    dialect = ""

    def __init__(self, config: ProviderConfig, urls: dict[str, str], headers: dict[str, str]) -> None:
        self.config = config
        self._urls = urls
        self._headers = {"Content-Type": "application/json", "User-Agent": "yourouter", **headers}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def vendor(self) -> str:
        return self.config.vendor

    def url(self, operation: str, model: str, stream: bool) -> str:
        return self._urls[operation]

    def headers(self, url: str = "", body: bytes = b"") -> dict[str, str]:
        return self._headers

    def supports(self, operation: str) -> bool:
        return operation in self._urls
