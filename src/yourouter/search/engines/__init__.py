"""One module per search engine's wire format: how a query becomes its request, and its answer Google's shape.
`engine(dialect)` finds one; a new engine adds its module and one line to `_ENGINES`."""

from __future__ import annotations

from typing import Any, Protocol

from yourouter.providers.base import Provider
from yourouter.search.query import SearchQuery


class SearchEngine(Protocol):
    def request(self, query: SearchQuery, provider: Provider) -> tuple[str, dict[str, str]]:
        """The upstream URL (query string included) and its params' auth headers."""
        ...

    def answer(self, body: bytes, query: SearchQuery) -> dict[str, Any]:
        """The upstream's successful answer as Google's `customsearch#search` object."""
        ...

    def error_message(self, body: bytes) -> str | None: ...


def engine(dialect: str) -> SearchEngine:
    from yourouter.search.engines import brave, google, searxng

    engines: dict[str, Any] = {"google-search": google, "brave": brave, "searxng": searxng}
    found: SearchEngine = engines[dialect]
    return found
