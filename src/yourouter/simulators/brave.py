"""A protocol-faithful Brave Search API simulator, as a raw ASGI app.

Serves `GET /res/v1/web/search` (also `POST` with a JSON body), `GET /res/v1/images/search` and `GET /health`.
Results come from the shared deterministic corpus (`_search_corpus`): the same pages as the Google and SearXNG
simulators for the same query, in Brave's shapes — web: `{"query": {...}, "mixed": {...}, "type": "search",
"web": {"type": "search", "results": [...], "family_friendly"}}` (`web` omitted when there are no results), each
result with `title`, `url`, `description`, `page_age`, `age`, `profile`, `language`, `family_friendly`, `meta_url`,
`thumbnail` (some), `extra_snippets` (with `extra_snippets=true`); images: `{"type": "images", "query": {...},
"results": [{"type": "image_result", "title", "url", "source", "thumbnail", "properties", "meta_url", ...}],
"extra": {...}}`. Successful responses carry `X-RateLimit-Limit/-Policy/-Remaining/-Reset`.

Auth: `X-Subscription-Token` is a required header — without it Brave answers 422 `VALIDATION` with
`meta.errors[].loc == ["header", "x-subscription-token"]`; when `SimulatorSettings.api_key` is set any other token
is 422 `SUBSCRIPTION_TOKEN_INVALID` (checked before the parameters, as Brave does).

Validation (422 `VALIDATION`, detail "Unable to validate request parameter(s)", pydantic-style `meta.errors`, all
errors at once): `q` required, 1-400 characters, at most 50 words; `count` 1-20 (web, default 20) or 1-200
(images, default 50); `offset` 0-9 (a page index: results `offset*count` on); `safesearch` off|moderate|strict
(images: off|strict, default strict); `country`, `search_lang`, `ui_lang` from Brave's lists (`ka`, `zh` are refused;
`zh-hans`, `jp` are not); `freshness` pd|pw|pm|py|YYYY-MM-DDtoYYYY-MM-DD; booleans (`spellcheck`, `extra_snippets`,
`text_decorations`, `operators`, ...) as pydantic parses them; `units` metric|imperial. Unknown parameters are
ignored. Operators in `q` (`site:`, `-site:`, `filetype:`/`ext:`, quotes, `-term`, `intitle:`; off with
`operators=false`) filter the corpus; `result_filter` without `web` drops the web results.

Errors are `{"type": "ErrorResponse", "error": {"id", "status", "code", "detail", "meta"}, "time"}`; an injected 429
is `RATE_LIMITED` with `X-RateLimit-*` headers. Faults and control endpoints are the OpenAI simulator's
(`[sim:status=429]` etc. in `q`).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from ._asgi import Headers
from ._base import Request, SimulatorSettings
from ._search_app import HEALTH, SearchCall, SearchError, SearchSimulator
from ._search_corpus import Criteria, Page, ParsedQuery, highlight, parse_query, search

__all__ = ["BraveSimulator", "create_app"]

PATHS = {"/res/v1/web/search": "web", "/res/v1/images/search": "images"}
COUNTRIES = ("AR", "AU", "AT", "BE", "BR", "CA", "CL", "DK", "FI", "FR", "DE", "HK", "IN", "ID", "IT", "JP", "KR",
             "MY", "MX", "NL", "NZ", "NO", "CN", "PL", "PT", "PH", "RU", "SA", "ZA", "ES", "SE", "CH", "TW", "TR", "GB",
             "US", "ALL")
SEARCH_LANGS = ("ar", "eu", "bn", "bg", "ca", "zh-hans", "zh-hant", "hr", "cs", "da", "nl", "en", "en-gb", "et", "fi",
                "fr", "gl", "de", "gu", "he", "hi", "hu", "is", "it", "jp", "kn", "ko", "lv", "lt", "ms", "ml", "mr",
                "nb", "pl", "pt-br", "pt-pt", "pa", "ro", "ru", "sr", "sk", "sl", "es", "sv", "ta", "te", "th", "tr",
                "uk", "vi")
UI_LANGS = ("es-AR", "en-AU", "de-AT", "nl-BE", "fr-BE", "pt-BR", "en-CA", "fr-CA", "es-CL", "da-DK", "fi-FI", "fr-FR",
            "de-DE", "zh-HK", "en-IN", "en-ID", "it-IT", "ja-JP", "ko-KR", "en-MY", "es-MX", "nl-NL", "en-NZ", "no-NO",
            "zh-CN", "pl-PL", "en-PH", "ru-RU", "en-ZA", "es-ES", "sv-SE", "fr-CH", "de-CH", "zh-TW", "tr-TR", "en-GB",
            "en-US", "es-US")
BOOLEANS = ("spellcheck", "extra_snippets", "text_decorations", "operators", "summary", "enable_rich_callback",
            "include_fetch_metadata")
FRESHNESS_HOURS = {"pd": 24, "pw": 24 * 7, "pm": 24 * 31, "py": 24 * 365}
VALIDATION_DETAIL = "Unable to validate request parameter(s)"
# injected status -> (code, detail, meta.component)
STATUS_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("VALIDATION", VALIDATION_DETAIL, "validation"),
    401: ("SUBSCRIPTION_TOKEN_INVALID", "The provided subscription token is invalid.", "authentication"),
    403: ("OPTION_NOT_IN_PLAN", "The option is not subscribed in the plan.", "subscriptions"),
    404: ("SUBSCRIPTION_NOT_FOUND", "No subscription found.", "subscriptions"),
    422: ("VALIDATION", VALIDATION_DETAIL, "validation"),
    429: ("RATE_LIMITED", "Request rate limit exceeded for plan.", "rate_limiter"),
}
RATE_LIMIT = 50
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


@dataclass(frozen=True)
class BraveCall(SearchCall):
    query: ParsedQuery = field(default_factory=lambda: ParsedQuery(words=()))
    criteria: Criteria = field(default_factory=Criteria)
    count: int = 20
    offset: int = 0
    safesearch: str = "moderate"
    country: str = "us"
    language: str = "en"
    spellcheck: bool = True
    decorations: bool = True
    extra_snippets: bool = False
    web: bool = True


def error_body(status: int, code: str, detail: str, meta: dict[str, Any], error_id: str) -> dict[str, Any]:
    """Brave's `ErrorResponse`."""
    return {"type": "ErrorResponse",
            "error": {"id": error_id, "status": status, "code": code, "detail": detail, "meta": meta},
            "time": int(time.time())}


def _enum_message(values: tuple[str, ...]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


class _Validator:
    """Collects pydantic-style errors (`type`, `loc`, `msg`, `input`, `ctx`) over the query parameters."""

    def __init__(self, params: dict[str, str]) -> None:
        self.params = params
        self.errors: list[dict[str, Any]] = []

    def add(self, kind: str, name: str, msg: str, value: object, ctx: dict[str, Any] | None = None,
            where: str = "query") -> None:
        error: dict[str, Any] = {"type": kind, "loc": [where, name], "msg": msg, "input": value}
        if ctx is not None:
            error["ctx"] = ctx
        self.errors.append(error)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            self.add("int_parsing", name, "Input should be a valid integer, unable to parse string as an integer", raw)
            return default
        if value < low:
            self.add("greater_than_equal", name, f"Input should be greater than or equal to {low}", raw, {"ge": low})
        elif value > high:
            self.add("less_than_equal", name, f"Input should be less than or equal to {high}", raw, {"le": high})
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...], fold: bool = True) -> str:
        raw = self.params.get(name)
        if raw is None:
            return default
        match = next((value for value in allowed if value == raw or (fold and value.lower() == raw.lower())), None)
        if match is None:
            expected = _enum_message(allowed)
            self.add("enum", name, f"Input should be {expected}", raw, {"expected": expected})
            return default
        return match

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.params.get(name)
        if raw is None:
            return default
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        self.add("bool_parsing", name, "Input should be a valid boolean, unable to interpret input", raw)
        return default

    def query(self) -> str:
        raw = self.params.get("q")
        if raw is None:
            self.add("missing", "q", "Field required", None)
            return ""
        if not raw:
            self.add("string_too_short", "q", "String should have at least 1 character", raw, {"min_length": 1})
        elif len(raw) > 400:
            self.add("string_too_long", "q", "String should have at most 400 characters", raw, {"max_length": 400})
        elif len(raw.split()) > 50:
            self.add("value_error", "q", "Value error, The query must not have more than 50 words.", raw,
                     {"error": {}})
        return raw

    def freshness(self) -> tuple[int | None, datetime | None, datetime | None]:
        raw = self.params.get("freshness")
        if not raw:
            return None, None, None
        if raw in FRESHNESS_HOURS:
            return FRESHNESS_HOURS[raw], None, None
        first, sep, last = raw.partition("to")
        try:
            if not sep:
                raise ValueError(raw)
            since = datetime.strptime(first, "%Y-%m-%d")
            until = datetime.strptime(last, "%Y-%m-%d") + timedelta(days=1)
        except ValueError:
            self.add("value_error", "freshness", "Value error, freshness must be pd, pw, pm, py or a date range "
                                                 "YYYY-MM-DDtoYYYY-MM-DD.", raw, {"error": {}})
            return None, None, None
        return None, since, until


class BraveSimulator(SearchSimulator[BraveCall]):
    """The ASGI application; `state` and `clock` are exposed for in-process use."""

    def route(self, request: Request) -> str:
        if request.path == "/health":
            return HEALTH
        route = PATHS.get(request.path.rstrip("/"))
        if route is None or request.method not in (("GET", "POST") if route == "web" else ("GET",)):
            raise SearchError(404, error_body(404, "RESOURCE_NOT_FOUND", "Resource not found.", {},
                                              self._error_id()))
        return route

    def authenticate(self, request: Request, route: str) -> None:
        token = request.headers.get("x-subscription-token")
        if token and self.settings.api_key is not None and token != self.settings.api_key:
            code, detail, component = STATUS_ERRORS[401]
            raise SearchError(422, error_body(422, code, detail, {"component": component}, self._error_id()))

    def parse(self, request: Request, route: str) -> BraveCall:
        params = request.params()
        if request.method == "POST":
            params.update(_json_params(request.body))
        check = _Validator(params)
        if not request.headers.get("x-subscription-token"):
            check.add("missing", "x-subscription-token", "Field required", None, where="header")
        q = check.query()
        images = route == "images"
        count = check.integer("count", 50 if images else 20, 1, 200 if images else 20)
        offset = 0 if images else check.integer("offset", 0, 0, 9)
        safe_values = ("off", "strict") if images else ("off", "moderate", "strict")
        safesearch = check.choice("safesearch", "strict" if images else "moderate", safe_values, fold=False)
        country = check.choice("country", "US", COUNTRIES)
        language = check.choice("search_lang", "en", SEARCH_LANGS)
        check.choice("ui_lang", "en-US", UI_LANGS)
        if "units" in params:
            check.choice("units", "metric", ("metric", "imperial"), fold=False)
        flags = {name: check.boolean(name, name in ("spellcheck", "text_decorations", "operators"))
                 for name in BOOLEANS}
        max_age, since, until = (None, None, None) if images else check.freshness()
        if check.errors:
            raise SearchError(422, error_body(422, "VALIDATION", VALIDATION_DETAIL, {"errors": check.errors},
                                              self._error_id()))
        filters = {part.strip() for part in params.get("result_filter", "").split(",") if part.strip()}
        criteria = Criteria(max_age_hours=max_age, since=since, until=until, safe=safesearch == "strict",
                            images=images)
        return BraveCall(route=route, text=q, query=parse_query(q, operators=flags["operators"]), criteria=criteria,
                         count=count, offset=offset, safesearch=safesearch, country=country.lower(),
                         language=language, spellcheck=flags["spellcheck"], decorations=flags["text_decorations"],
                         extra_snippets=flags["extra_snippets"], web=not filters or "web" in filters)

    def render(self, call: BraveCall, now: datetime) -> tuple[object, Headers]:
        pages = search(call.query, call.criteria, now)
        hidden = call.criteria.safe and len(search(call.query, Criteria(images=call.criteria.images,
                                                                        since=call.criteria.since,
                                                                        until=call.criteria.until,
                                                                        max_age_hours=call.criteria.max_age_hours),
                                                   now)) > len(pages)
        if call.route == "images":
            return self._images(call, pages[:call.count], hidden, now), self._rate_headers(remaining=RATE_LIMIT - 1)
        start = call.offset * call.count
        shown = pages[start:start + call.count] if call.web else []
        query: dict[str, Any] = {
            "original": call.text, "show_strict_warning": hidden, "is_navigational": False,
            "is_news_breaking": False, "spellcheck_off": not call.spellcheck, "country": call.country,
            "bad_results": False, "should_fallback": False, "postal_code": "", "city": "", "header_country": "",
            "more_results_available": len(pages) > start + call.count and call.offset < 9, "state": "",
        }
        if call.query.operators:
            query["cleaned"] = call.query.text
            query["search_operators"] = {"applied": True, "cleaned_query": call.query.text,
                                         "sites": list(call.query.sites)}
        payload: dict[str, Any] = {
            "query": query,
            "mixed": {"type": "mixed", "main": [{"type": "web", "index": i, "all": False} for i in range(len(shown))],
                      "top": [], "side": []},
            "type": "search",
        }
        if shown:
            terms = call.query.highlight_terms
            payload["web"] = {"type": "search", "results": [self._web_result(call, page, terms, now)
                                                            for page in shown],
                              "family_friendly": not any(page.adult for page in shown)}
        return payload, self._rate_headers(remaining=RATE_LIMIT - 1)

    def fault_error(self, status: int, retry_after: float | None) -> SearchError:
        code, detail, component = STATUS_ERRORS.get(status, ("INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST",
                                                             f"Simulated error {status}.", "api"))
        meta: dict[str, Any] = {"component": component}
        headers: Headers = []
        if status == 429:
            meta = {"plan": "Search", "rate_limit": RATE_LIMIT, "rate_current": RATE_LIMIT + 1, "quota_limit": None,
                    "quota_current": 1, "org_rate_limit": None, "component": component}
            headers = self._rate_headers(remaining=0, reset=max(1, round(retry_after or 1)))
        return SearchError(status, error_body(status, code, detail, meta, self._error_id()), headers)

    def _web_result(self, call: BraveCall, page: Page, terms: tuple[str, ...], now: datetime) -> dict[str, Any]:
        published = page.published(now)
        favicon = _proxied(f"http://favicons.search.brave.com/icons/{_digest(page.host)}/{page.host}/", 32, 32)
        description = highlight(page.snippet, terms, "strong") if call.decorations else page.snippet
        result: dict[str, Any] = {
            "title": page.title, "url": page.url, "is_source_local": False, "is_source_both": False,
            "description": description, "page_age": published.isoformat(),
            "profile": {"name": page.site, "url": page.url, "long_name": page.host, "img": favicon},
            "language": call.language, "family_friendly": not page.adult, "type": "search_result",
            "subtype": "generic", "is_live": False,
            "meta_url": {"scheme": page.scheme, "netloc": page.host, "hostname": page.host, "favicon": favicon,
                         "path": _display_path(page.path)},
        }
        if page.has_thumbnail:
            result["thumbnail"] = {"src": _proxied(page.image.url, 200, 200), "original": page.image.url,
                                   "logo": False}
        result["age"] = _age(page.age_hours, published)
        if call.extra_snippets:
            result["extra_snippets"] = list(page.extra_snippets)
        return result

    def _images(self, call: BraveCall, pages: list[Page], hidden: bool, now: datetime) -> dict[str, Any]:
        results = []
        for position, page in enumerate(pages):
            image = page.image
            width, height = image.thumbnail(500)
            favicon = _proxied(f"http://favicons.search.brave.com/icons/{_digest(page.host)}/{page.host}/", 32, 32)
            results.append({
                "type": "image_result", "title": page.title, "url": page.url, "source": page.host,
                "page_fetched": page.published(now).isoformat() + "Z",
                "thumbnail": {"src": _proxied(image.url, 500, 0), "width": width, "height": height},
                "properties": {"url": image.url, "placeholder": _proxied(image.url, 32, 0), "width": image.width,
                               "height": image.height},
                "meta_url": {"scheme": page.scheme, "netloc": page.host, "hostname": page.host, "favicon": favicon,
                             "path": _display_path(page.path)},
                "confidence": "high" if position < len(pages) // 3 + 1 else "medium",
            })
        return {"type": "images",
                "query": {"original": call.text, "altered": None, "spellcheck_off": not call.spellcheck,
                          "show_strict_warning": hidden},
                "results": results, "extra": {"might_be_offensive": any(page.adult for page in pages)}}

    def _rate_headers(self, remaining: int, reset: int = 1) -> Headers:
        month_left = 2_592_000 - int(self.clock()) % 2_592_000
        return [(b"x-ratelimit-limit", f"{RATE_LIMIT}, 0".encode()),
                (b"x-ratelimit-policy", f"{RATE_LIMIT};w=1, 0;w=2592000".encode()),
                (b"x-ratelimit-remaining", f"{remaining}, 0".encode()),
                (b"x-ratelimit-reset", f"{reset}, {month_left}".encode())]

    def _error_id(self) -> str:
        return str(uuid.UUID(int=self.state.rng.getrandbits(128), version=4))


def _json_params(body: bytes) -> dict[str, str]:
    """A `POST /res/v1/web/search` JSON body as query-parameter strings."""
    try:
        value = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): ("true" if v is True else "false" if v is False else str(v)) for k, v in value.items()
            if v is not None}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:48]


def _proxied(url: str, width: int, height: int) -> str:
    """An `imgs.search.brave.com` proxy URL, shaped like Brave's (the target URL base64 in 16-character parts)."""
    token = base64.urlsafe_b64encode(hashlib.sha256(url.encode()).digest()).decode().rstrip("=")
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    parts = "/".join(encoded[i:i + 16] for i in range(0, len(encoded), 16))
    return f"https://imgs.search.brave.com/{token}/rs:fit:{width}:{height}:1:0/g:ce/{parts}"


def _display_path(path: str) -> str:
    segments = [segment for segment in path.split("?", 1)[0].split("/") if segment]
    return "› " + " › ".join(segments) if segments else ""


def _age(hours: int, published: datetime) -> str:
    if hours < 24:
        return f"{hours} hour{'s' if hours != 1 else ''} ago"
    if hours < 24 * 30:
        days = hours // 24
        return f"{days} day{'s' if days != 1 else ''} ago"
    return f"{_MONTHS[published.month - 1]} {published.day}, {published.year}"


def create_app(settings: SimulatorSettings) -> BraveSimulator:
    """Build the simulator ASGI app (an `async (scope, receive, send)` callable that also handles lifespan)."""
    return BraveSimulator(settings)
