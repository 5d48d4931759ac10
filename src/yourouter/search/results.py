"""Search results in one neutral form, and rendered in Google's Custom Search response shape."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from yourouter.search.query import SearchQuery

_TEMPLATE = ("https://www.googleapis.com/customsearch/v1?q={searchTerms}&num={count?}&start={startIndex?}"
             "&lr={language?}&safe={safe?}&cx={cx?}&sort={sort?}&filter={filter?}&gl={gl?}&cr={cr?}"
             "&googlehost={googleHost?}&c2coff={disableCnTwTranslation?}&hq={hq?}&hl={hl?}&siteSearch={siteSearch?}"
             "&siteSearchFilter={siteSearchFilter?}&exactTerms={exactTerms?}&excludeTerms={excludeTerms?}"
             "&linkSite={linkSite?}&orTerms={orTerms?}&dateRestrict={dateRestrict?}&lowRange={lowRange?}"
             "&highRange={highRange?}&searchType={searchType}&fileType={fileType?}&rights={rights?}"
             "&imgSize={imgSize?}&imgType={imgType?}&imgColorType={imgColorType?}"
             "&imgDominantColor={imgDominantColor?}&alt=json")
#: Query parameters echoed in Google's query objects, by their names there.
_ECHOED = {"lr": "language", "safe": "safe", "cx": "cx", "sort": "sort", "filter": "filter", "gl": "gl",
           "cr": "cr", "hq": "hq", "hl": "hl", "siteSearch": "siteSearch", "siteSearchFilter": "siteSearchFilter",
           "exactTerms": "exactTerms", "excludeTerms": "excludeTerms", "linkSite": "linkSite", "orTerms": "orTerms",
           "dateRestrict": "dateRestrict", "lowRange": "lowRange", "highRange": "highRange",
           "searchType": "searchType", "fileType": "fileType", "rights": "rights", "imgSize": "imgSize",
           "imgType": "imgType", "imgColorType": "imgColorType", "imgDominantColor": "imgDominantColor",
           "c2coff": "disableCnTwTranslation"}


@dataclass(frozen=True, slots=True)
class SearchImage:
    context_link: str
    width: int | None = None
    height: int | None = None
    thumbnail: str | None = None
    thumbnail_width: int | None = None
    thumbnail_height: int | None = None
    byte_size: int | None = None


@dataclass(frozen=True, slots=True)
class SearchItem:
    title: str
    link: str
    snippet: str = ""
    mime: str | None = None
    image: SearchImage | None = None
    pagemap: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchResult:
    items: tuple[SearchItem, ...]
    total: int
    search_time: float = 0.0
    title: str = "YouRouter search"
    spelling: str | None = None


def _bold(text: str, terms: list[str]) -> str:
    """HTML-escaped text with the query's terms in <b>, as Google's html* fields show them."""
    escaped = html.escape(text, quote=False)
    words = [re.escape(html.escape(term, quote=False)) for term in terms if len(term) > 1]
    if not words:
        return escaped
    return re.sub("(" + "|".join(words) + ")", r"<b>\1</b>", escaped, flags=re.IGNORECASE)


def _query_object(query: SearchQuery, total: int, count: int, start: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"title": f"Google Custom Search - {query.q}", "totalResults": str(total),
                             "searchTerms": query.q, "count": count, "startIndex": start,
                             "inputEncoding": "utf8", "outputEncoding": "utf8"}
    for name, echoed in _ECHOED.items():
        value = getattr(query, name)
        if value is not None:
            entry[echoed] = value
    entry.setdefault("safe", "off")
    return entry


def _item(item: SearchItem, terms: list[str]) -> dict[str, Any]:
    host = urlsplit(item.link).netloc
    out: dict[str, Any] = {"kind": "customsearch#result", "title": item.title, "htmlTitle": _bold(item.title, terms),
                           "link": item.link, "displayLink": host.removeprefix("www."), "snippet": item.snippet,
                           "htmlSnippet": _bold(item.snippet, terms), "formattedUrl": item.link,
                           "htmlFormattedUrl": _bold(item.link, terms)}
    if item.pagemap:
        out["pagemap"] = item.pagemap
    if item.mime:
        out["mime"] = item.mime
        out["fileFormat"] = item.mime.replace("/", " ").title()
    if item.image is not None:
        image = item.image
        out["image"] = {key: value for key, value in {
            "contextLink": image.context_link, "height": image.height, "width": image.width,
            "byteSize": image.byte_size, "thumbnailLink": image.thumbnail, "thumbnailHeight": image.thumbnail_height,
            "thumbnailWidth": image.thumbnail_width}.items() if value is not None}
    return out


def render_google(result: SearchResult, query: SearchQuery) -> dict[str, Any]:
    """The `customsearch#search` object for a result: queries with nextPage/previousPage, searchInformation with
    string totals, and `items` left out entirely when there are none (as Google does)."""
    items = result.items[:query.num]
    total = max(result.total, query.start - 1 + len(items))
    queries: dict[str, Any] = {"request": [_query_object(query, total, query.num, query.start)]}
    next_start = query.start + query.num
    if items and next_start <= min(total, 100):  # as Google offers it (asking for it may still be refused)
        queries["nextPage"] = [_query_object(query, total, query.num, next_start)]
    if query.start > 1:
        queries["previousPage"] = [_query_object(query, total, query.num, max(1, query.start - query.num))]
    terms = [t.strip('"') for t in query.q.split()]
    answer: dict[str, Any] = {
        "kind": "customsearch#search",
        "url": {"type": "application/json", "template": _TEMPLATE},
        "queries": queries,
        "context": {"title": result.title},
        "searchInformation": {"searchTime": round(result.search_time, 6),
                              "formattedSearchTime": f"{result.search_time:.2f}", "totalResults": str(total),
                              "formattedTotalResults": f"{total:,}"},
    }
    if result.spelling:
        answer["spelling"] = {"correctedQuery": result.spelling, "htmlCorrectedQuery": html.escape(result.spelling)}
    if items:
        answer["items"] = [_item(item, terms) for item in items]
    return answer


def count_items(answer: dict[str, Any]) -> int:
    items = answer.get("items")
    return len(items) if isinstance(items, list) else 0
