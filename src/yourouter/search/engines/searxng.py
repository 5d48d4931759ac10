"""A SearXNG instance's JSON API (`/search?format=json`; the instance must enable the json format), answered in
Google's shape. SearXNG pages in fixed steps (`searxng_page_size`, 10 by default): `start` maps to `pageno`, and a
`start` inside a page skips its first results; `safe` maps to `safesearch` 0/2, `dateRestrict` to `time_range`,
`lr`/`hl` to `language`, image search to `categories=images`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from yourouter.providers.base import Provider
from yourouter.search.engines._common import language, mime_of, plain, window
from yourouter.search.query import SearchQuery
from yourouter.search.results import SearchImage, SearchItem, SearchResult, render_google

PAGE_SIZE = 10
_TIME_RANGE = {"d": "day", "w": "week", "m": "month", "y": "year"}


def request(query: SearchQuery, provider: Provider) -> tuple[str, dict[str, str]]:
    page, _, _ = window(query.start, query.num, PAGE_SIZE)
    params: dict[str, str] = {"q": query.operators(), "format": "json", "pageno": str(page + 1),
                              "safesearch": "2" if query.safe in ("active", "high", "medium") else "0",
                              "categories": "images" if query.images else "general"}
    if lang := language(query.lr, query.hl):
        params["language"] = lang
    if query.dateRestrict:
        params["time_range"] = _TIME_RANGE[query.dateRestrict[0]]
    return provider.config.base_url + "/search?" + urlencode(params), provider.headers()


def _item(raw: dict[str, Any], images: bool) -> SearchItem:
    url = str(raw.get("url", ""))
    if images and raw.get("img_src"):
        link = str(raw["img_src"])
        image = SearchImage(context_link=url, thumbnail=raw.get("thumbnail_src"))
        return SearchItem(title=plain(raw.get("title")), link=link, snippet=plain(raw.get("content")),
                          mime=mime_of(link), image=image)
    pagemap = {"metatags": [{"article:published_time": raw["publishedDate"]}]} if raw.get("publishedDate") else {}
    return SearchItem(title=plain(raw.get("title")), link=url, snippet=plain(raw.get("content")), pagemap=pagemap)


def answer(body: bytes, query: SearchQuery) -> dict[str, Any]:
    payload = orjson.loads(body)
    raw = [r for r in payload.get("results") or [] if isinstance(r, dict)]
    _, _, skip = window(query.start, query.num, PAGE_SIZE)
    items = tuple(_item(r, query.images) for r in raw[skip:skip + query.num])
    reported = payload.get("number_of_results")
    estimated = query.start - 1 + len(items) + (PAGE_SIZE if len(raw) >= PAGE_SIZE else 0)
    total = max(int(reported), estimated) if isinstance(reported, int | float) and reported else estimated
    corrections = payload.get("corrections") or []
    return render_google(SearchResult(items=items, total=total if items else 0, title="SearXNG",
                                      spelling=str(corrections[0]) if corrections else None), query)


def error_message(body: bytes) -> str | None:
    text = body.decode("utf-8", "replace").strip()
    return text[:200] or None
