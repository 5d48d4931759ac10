"""Google Custom Search-compatible web search: `GET /customsearch/v1` (and `/customsearch/v1/siterestrict`)."""

from __future__ import annotations

from yourouter.asgi import PathRouter, Request, Send
from yourouter.search.service import SearchService


class SearchRoutes:
    def __init__(self, service: SearchService) -> None:
        self._service = service

    def mount(self, router: PathRouter) -> None:
        router.add("GET", "/customsearch/v1", self.search)
        router.add("GET", "/customsearch/v1/siterestrict", self.search)

    async def search(self, request: Request, send: Send) -> None:
        await self._service.handle(request, send)
