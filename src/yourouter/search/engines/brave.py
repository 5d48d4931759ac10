"""The Brave Search API (`/res/v1/web/search`, `/res/v1/images/search`, `X-Subscription-Token`), answered in Google's
shape. Google's refinements become query operators (`site:`, `filetype:`, quotes, `-term`); `start` maps to
Brave's page `offset` (0-9) in pages of `num`; `dateRestrict` to `freshness`; `safe` to `safesearch`; `gl`, `lr`
and `hl` to `country`, `search_lang` and `ui_lang`."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import orjson

from yourouter.codecs.common import object_or_none
from yourouter.providers.base import Provider
from yourouter.search.engines._common import language, mime_of, plain
from yourouter.search.query import SearchQuery
from yourouter.search.results import SearchImage, SearchItem, SearchResult, render_google

_FRESHNESS = {"d": "pd", "w": "pw", "m": "pm", "y": "py"}
_DAYS = {"d": 1, "w": 7, "m": 31, "y": 366}


def _freshness(restrict: str) -> str:
    unit, count = restrict[0], int(restrict[1:] or 1)
    if count <= 1:
        return _FRESHNESS[unit]
    today = dt.datetime.now(dt.UTC).date()
    return f"{today - dt.timedelta(days=_DAYS[unit] * count)}to{today}"


_MAX_COUNT, _MAX_OFFSET = 20, 9


def page(start: int, num: int) -> tuple[int, int, int]:
    """Brave pages by `offset` (a page index, 0-9) in pages of `count` (1-20): the (count, offset, results to skip)
    whose page holds Google's results `start`..`start+num-1`; when no page size holds them all, the page that
    holds `start` (the answer then has fewer than `num` results)."""
    first, last = start - 1, start - 1 + num - 1
    for count in range(num, _MAX_COUNT + 1):
        if first // count == last // count and first // count <= _MAX_OFFSET:
            return count, first // count, first % count
    count = num
    offset = min(first // count, _MAX_OFFSET)
    return count, offset, first - offset * count


def request(query: SearchQuery, provider: Provider) -> tuple[str, dict[str, str]]:
    count, offset, _ = page(query.start, query.num)
    params: dict[str, str] = {"q": query.operators(), "count": str(count), "offset": str(offset),
                              "safesearch": "strict" if query.safe in ("active", "high", "medium") else "off"}
    if query.gl:
        params["country"] = query.gl.lower()
    if lang := language(query.lr, None):
        params["search_lang"] = lang
    if query.hl:
        params["ui_lang"] = query.hl
    if query.dateRestrict and not query.images:
        params["freshness"] = _freshness(query.dateRestrict)
    path = "/images/search" if query.images else "/web/search"
    return provider.config.base_url + path + "?" + urlencode(params), provider.headers()


def _web_item(raw: dict[str, Any]) -> SearchItem:
    pagemap: dict[str, Any] = {}
    thumbnail = raw.get("thumbnail")
    if isinstance(thumbnail, dict) and thumbnail.get("src"):
        pagemap["cse_thumbnail"] = [{"src": thumbnail["src"]}]
    if raw.get("page_age"):
        pagemap["metatags"] = [{"article:published_time": raw["page_age"]}]
    return SearchItem(title=plain(raw.get("title")), link=str(raw.get("url", "")),
                      snippet=plain(raw.get("description")), pagemap=pagemap)


def _image_item(raw: dict[str, Any]) -> SearchItem:
    properties: dict[str, Any] = raw["properties"] if isinstance(raw.get("properties"), dict) else {}
    thumbnail: dict[str, Any] = raw["thumbnail"] if isinstance(raw.get("thumbnail"), dict) else {}
    link = str(properties.get("url") or thumbnail.get("src") or raw.get("url", ""))
    image = SearchImage(context_link=str(raw.get("url", "")), width=properties.get("width"),
                        height=properties.get("height"), thumbnail=thumbnail.get("src"))
    return SearchItem(title=plain(raw.get("title")), link=link, snippet=plain(raw.get("title")),
                      mime=mime_of(link), image=image)


def answer(body: bytes, query: SearchQuery) -> dict[str, Any]:
    payload = orjson.loads(body)
    count, _, skip = page(query.start, query.num)
    if query.images:
        raw = [r for r in payload.get("results") or [] if isinstance(r, dict)]
        items = tuple(_image_item(r) for r in raw)
        more = len(raw) >= count
    else:
        web = payload.get("web") if isinstance(payload.get("web"), dict) else {}
        raw = [r for r in web.get("results") or [] if isinstance(r, dict)]
        items = tuple(_web_item(r) for r in raw)
        meta = payload.get("query") if isinstance(payload.get("query"), dict) else {}
        more = bool(meta.get("more_results_available"))
    items = items[skip:skip + query.num]
    total = query.start - 1 + len(items) + (query.num if more and items else 0)
    return render_google(SearchResult(items=items, total=total, title="Brave Search"), query)


def error_message(body: bytes) -> str | None:
    error = (object_or_none(body) or {}).get("error")
    detail = (error.get("detail") or error.get("code")) if isinstance(error, dict) else None
    return str(detail) if detail else None
