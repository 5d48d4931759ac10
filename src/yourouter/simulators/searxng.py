"""A protocol-faithful SearXNG instance's search API simulator (`/search?format=json`), as a raw ASGI app.

Serves `GET /search` and `POST /search` (form-encoded; form fields win over the query string, as in SearXNG's
`pre_request`) and `GET /health`. Results come from the shared deterministic corpus (`_search_corpus`): the same
pages as the Google and Brave simulators for the same query, `SearxngSettings.page_size` (10) a page, shaped like
`searx.webutils.get_json_response`: `{"query", "number_of_results", "results": [...], "answers", "corrections",
"infoboxes", "suggestions", "unresponsive_engines"}`; each result has SearXNG's keys (`url`, `title`, `content`,
`engine`, `engines`, `positions`, `score`, `category`, `template`, `parsed_url`, `publishedDate`, `thumbnail`, ...),
image results (`categories=images`) `template: "images.html"`, `img_src`, `thumbnail_src`, `resolution`,
`img_format`, `filesize`, `source`.

Behaviour of `searx/webapp.py` and `searx/webadapter.py`: a `format` other than html/json/csv/rss counts as html; a
format the instance has not enabled is a 403 Forbidden HTML page — this instance enables only `json` (none with
`SearxngSettings.json_enabled=False`, the usual misconfiguration). Then, as JSON `{"error": ...}`: no `q` is 400
"No query"; `pageno` not an integer >= 1, `safesearch` not a number, `time_range` other than day|week|month|year,
a non-numeric `timeout_limit` or a `language` that is not a language code (or `auto`) is 400 `Invalid value "x" for
parameter name`; a numeric `safesearch` above 2 is a 500 "search error" (SearXNG's exception message concatenates
the int and fails). Unknown `categories` and `engines` are ignored; `engines` restricts the results to those
engines. `safesearch` 1 or 2 drops adult pages; `time_range` filters by date; operators in `q` filter the corpus.
`[sim:unresponsive]` in `q` answers 200 with no results and every engine in `unresponsive_engines` (what an
instance whose upstreams all fail returns).

No auth by default; when `SimulatorSettings.api_key` is set, `Authorization: Bearer <key>` is required (as an
authenticating reverse proxy would: 401 HTML otherwise). Faults and control endpoints are the OpenAI simulator's;
an injected 429 is the limiter's plain "Too Many Requests", a 5xx SearXNG's `{"error": "search error"}`.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlparse

from ._asgi import Headers
from ._base import Request, SimulatorSettings
from ._search_app import HEALTH, SearchCall, SearchError, SearchSimulator
from ._search_corpus import IMAGE_ENGINES, WEB_ENGINES, Criteria, Page, ParsedQuery, parse_query, search

__all__ = ["SearxngSettings", "SearxngSimulator", "create_app"]

FORMATS = ("html", "json", "csv", "rss")
CATEGORIES = ("general", "images", "videos", "news", "map", "music", "it", "science", "files", "social media")
ENGINES = (*WEB_ENGINES, "wikipedia", *IMAGE_ENGINES)
TIME_RANGES = {"day": 24, "week": 24 * 7, "month": 24 * 31, "year": 24 * 365}
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-zA-Z]{2})?$")
# status -> (reason phrase, werkzeug's description)
_PAGES = {
    401: ("Unauthorized", "The server could not verify that you are authorized to access the URL requested. You "
                          "either supplied the wrong credentials (e.g. a bad password), or your browser doesn't "
                          "understand how to supply the credentials required."),
    403: ("Forbidden", "You don't have the permission to access the requested resource. It is either read-protected "
                       "or not readable by the server."),
    404: ("Not Found", "The requested URL was not found on the server. If you entered the URL manually please check "
                       "your spelling and try again."),
    405: ("Method Not Allowed", "The method is not allowed for the requested URL."),
}


@dataclass
class SearxngSettings:
    page_size: int = 10
    json_enabled: bool = True


@dataclass(frozen=True)
class SearxngCall(SearchCall):
    query: ParsedQuery = field(default_factory=lambda: ParsedQuery(words=()))
    criteria: Criteria = field(default_factory=Criteria)
    pageno: int = 1
    category: str = "general"
    engines: frozenset[str] | None = None


def html_error(status: int, headers: Headers | None = None) -> SearchError:
    """Flask/werkzeug's HTML error page for `status`."""
    name, description = _PAGES.get(status, ("Error", "The server returned an error."))
    page = (f"<!doctype html>\n<html lang=en>\n<title>{status} {name}</title>\n<h1>{name}</h1>\n"
            f"<p>{html.escape(description).replace('&#x27;', '&#39;')}</p>\n")  # markupsafe's entity
    return SearchError(status, None, headers, raw=page.encode())


def json_error(status: int, message: str) -> SearchError:
    return SearchError(status, {"error": message})


def _invalid(name: str, value: str) -> SearchError:
    """searx.exceptions.SearxParameterException, as `/search` answers it in the json format."""
    message = f"Empty {name} parameter" if value == "" else f'Invalid value "{value}" for parameter {name}'
    return json_error(400, message)


class SearxngSimulator(SearchSimulator[SearxngCall]):
    """The ASGI application; `state` and `clock` are exposed for in-process use."""

    def __init__(self, settings: SimulatorSettings, searxng: SearxngSettings | None = None) -> None:
        super().__init__(settings)
        self.searxng = searxng or SearxngSettings()

    def route(self, request: Request) -> str:
        if request.path == "/health":
            return HEALTH
        if request.path.rstrip("/") != "/search":
            raise html_error(404)
        if request.method not in ("GET", "POST"):
            raise html_error(405, [(b"allow", b"GET, POST, HEAD, OPTIONS")])
        return "search"

    def authenticate(self, request: Request, route: str) -> None:
        key = self.settings.api_key
        if key is not None and request.headers.get("authorization", "") != f"Bearer {key}":
            raise html_error(401, [(b"www-authenticate", b'Bearer realm="searxng"')])

    def parse(self, request: Request, route: str) -> SearxngCall:
        form = _form(request)
        output_format = form.get("format", "html")
        if output_format not in FORMATS:
            output_format = "html"
        if output_format != "json" or not self.searxng.json_enabled:
            raise html_error(403)
        q = form.get("q", "")
        if not q:
            raise json_error(400, "No query")
        pageno = form.get("pageno", "1")
        if not pageno.isdigit() or int(pageno) < 1:
            raise _invalid("pageno", pageno)
        safesearch = form.get("safesearch", "0")
        if not safesearch.isdigit():
            raise _invalid("safesearch", safesearch)
        if int(safesearch) > 2:
            # SearXNG raises SearxParameterException('safesearch', <int>), whose message concatenation fails;
            # the TypeError reaches the generic handler.
            raise json_error(500, "search error")
        time_range = form.get("time_range")
        time_range = None if time_range in ("", "None") else time_range
        if time_range is not None and time_range not in TIME_RANGES:
            raise _invalid("time_range", time_range)
        timeout = form.get("timeout_limit")
        if timeout not in (None, "", "None"):
            try:
                float(timeout or "")
            except ValueError as exc:
                raise _invalid("timeout_limit", timeout or "") from exc
        language = form.get("language")
        if language is not None and language != "auto" and not _LANGUAGE.match(language):
            raise _invalid("language", language)
        categories = _categories(form)
        engines = frozenset(name.strip() for name in form.get("engines", "").split(",")) & frozenset(ENGINES)
        images = categories == ["images"] or (bool(engines) and engines <= frozenset(IMAGE_ENGINES))
        criteria = Criteria(max_age_hours=TIME_RANGES.get(time_range or ""), safe=int(safesearch) >= 1,
                            images=images)
        return SearxngCall(route=route, text=q, query=parse_query(q), criteria=criteria, pageno=int(pageno),
                           category="images" if images else next(c for c in categories if c != "images"),
                           engines=engines or None)

    def render(self, call: SearxngCall, now: datetime) -> tuple[object, Headers]:
        images = call.category == "images"
        pool = IMAGE_ENGINES if images else (*WEB_ENGINES, "wikipedia")
        unresponsive: list[list[str]] = []
        pages = search(call.query, call.criteria, now)
        if call.query.unresponsive:
            names = sorted(call.engines or ({"bing images", "google images"} if images else {"google", "brave"}))
            unresponsive = [[name, "timeout"] for name in names]
            pages = []
        found: list[tuple[Page, tuple[str, ...]]] = []
        for page in pages:
            engines = tuple(e for e in (page.image_engines if images else page.engines)
                            if e in pool and (call.engines is None or e in call.engines))
            if engines:
                found.append((page, engines))
        size = self.searxng.page_size
        shown = found[(call.pageno - 1) * size: call.pageno * size]
        results = [_image_result(page, engines) if images else _web_result(page, engines, call.category, now)
                   for page, engines in shown]
        text = call.query.text
        return {"query": call.text, "number_of_results": len(found), "results": results, "answers": [],
                "corrections": [], "infoboxes": [],
                "suggestions": [f"{text} tutorial", f"{text} examples", f"what is {text}"] if found else [],
                "unresponsive_engines": unresponsive}, []

    def fault_error(self, status: int, retry_after: float | None) -> SearchError:
        if status == 429:
            return SearchError(429, None, raw=b"Too Many Requests")
        if status >= 500:
            return json_error(status, "search error")
        return html_error(status)


def _form(request: Request) -> dict[str, str]:
    form: dict[str, str] = {}
    if request.method == "POST" and "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    for name, value in request.params().items():
        form.setdefault(name, value)
    return form


def _categories(form: dict[str, str]) -> list[str]:
    """`categories=a,b` and `category_<name>=on|off`, unknown names ignored; `general` when none is left."""
    chosen: list[str] = []
    for name, value in form.items():
        if name == "categories":
            chosen.extend(c for c in (part.strip() for part in value.split(",")) if c in CATEGORIES)
        elif name.startswith("category_") and name[9:] in CATEGORIES:
            if value != "off":
                chosen.append(name[9:])
            elif name[9:] in chosen:
                chosen.remove(name[9:])
    return list(dict.fromkeys(chosen)) or ["general"]


def _common(page: Page, engines: tuple[str, ...]) -> dict[str, Any]:
    positions = [page.rank] * len(engines)
    return {"engines": list(engines), "open_group": False, "close_group": False, "positions": positions,
            "score": len(engines) * sum(1 / position for position in positions)}


def _web_result(page: Page, engines: tuple[str, ...], category: str, now: datetime) -> dict[str, Any]:
    return {"url": page.url, "title": page.title, "content": page.snippet, "engine": engines[0],
            "template": "default.html", "parsed_url": list(urlparse(page.url)), "img_src": "", "iframe_src": "",
            "audio_src": "", "thumbnail": page.image.url if page.has_thumbnail else "",
            "publishedDate": page.published(now).isoformat(), "pubdate": "", "length": None, "views": "",
            "author": "", "metadata": "", "priority": "", **_common(page, engines), "category": category}


def _image_result(page: Page, engines: tuple[str, ...]) -> dict[str, Any]:
    image = page.image
    width, height = image.thumbnail(300)
    return {"url": page.url, "title": page.title, "content": "", "engine": engines[0], "template": "images.html",
            "parsed_url": list(urlparse(page.url)), "img_src": image.url,
            "thumbnail_src": f"https://tse1.mm.bing.net/th?id=OIP.{_digest(image.url)}&w={width}&h={height}",
            "resolution": f"{image.width} x {image.height}", "img_format": "jpeg" if image.extension == "jpg"
            else image.extension, "filesize": _filesize(image.byte_size), "source": page.host, "iframe_src": "",
            "audio_src": "", "thumbnail": "", "publishedDate": None, "pubdate": "", "length": None, "views": "",
            "author": "", "metadata": "", "priority": "", **_common(page, engines), "category": "images"}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:22]


def _filesize(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.2f} KB"
    return f"{size / (1024 * 1024):.2f} MB"


def create_app(settings: SimulatorSettings, searxng: SearxngSettings | None = None) -> SearxngSimulator:
    """Build the simulator ASGI app (an `async (scope, receive, send)` callable that also handles lifespan)."""
    return SearxngSimulator(settings, searxng)
