"""A protocol-faithful Google Custom Search JSON API (Programmable Search Engine) simulator, as a raw ASGI app.

Serves `GET /customsearch/v1` and `GET /customsearch/v1/siterestrict` (the paths `google-api-python-client` builds
from `client_options={"api_endpoint": ...}`, with `key=` in the query string) and `GET /health`. Results come from
the shared deterministic corpus (`_search_corpus`): the same pages as the Brave and SearXNG simulators for the same
query. Response shape per the `customsearch.v1` discovery document: `kind`, `url` (OpenSearch template),
`queries.request` / `nextPage` (absent on the last page) / `previousPage` (absent on the first), `context.title`,
`searchInformation` (`totalResults` a string), `items` (omitted when there are none); image search
(`searchType=image`) items carry `mime`, `fileFormat` and `image{...}`.

Credentials: the `key` query parameter or `x-goog-api-key` (an OAuth `Authorization: Bearer` / `access_token` is
taken as well). None at all: 403 PERMISSION_DENIED ("Method doesn't allow unregistered callers ..."). When
`SimulatorSettings.api_key` is set, another key is 400 INVALID_ARGUMENT "API key not valid. Please pass a valid API
key." (ErrorInfo `API_KEY_INVALID`), another bearer token 401 UNAUTHENTICATED.

Validation (Google's envelope `{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status"}}`):
a non-integer `num`/`start`/`snippetLength` is `Invalid value at 'num' (TYPE_INT32), "x"` with a BadRequest field
violation; a missing `q` or `cx`, an unknown `cx` (when `GoogleSearchSettings.engines` is set), `num` outside 1-10,
`start + num - 1 > 100` (so `start=91&num=10` is the last page), `snippetLength` outside 161-1000, an unknown enum
value (`safe`, `searchType`, `siteSearchFilter`, `imgSize`, `imgType`, `imgColorType`, `imgDominantColor`; case does
not matter) or a malformed `dateRestrict` are 400 INVALID_ARGUMENT "Request contains an invalid argument." `start=0`
counts as 1. Like Google, `nextPage` is offered while its `startIndex` is within `totalResults` and 100, even when
`startIndex + num - 1` would pass 100.

Filters: operators in `q` (see `_search_corpus`), `siteSearch` + `siteSearchFilter` (`i` default, `e`),
`exactTerms`, `excludeTerms`, `orTerms`, `hq`, `fileType`, `dateRestrict` (`d|w|m|y[N]`), `safe=active` (also the
legacy `high`/`medium`), `sort=date` (`date:a`, `date:r:YYYYMMDD:YYYYMMDD`), and for images `imgSize`, `imgType`,
`imgColorType`, `imgDominantColor`. `lr`, `gl`, `hl`, `cr` and the rest are echoed in the query objects.

Faults and control endpoints are the OpenAI simulator's (`[sim:status=429]` etc. in `q`); an injected 429 is
RESOURCE_EXHAUSTED with reason `rateLimitExceeded` and Google's daily-quota message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ._asgi import Headers
from ._base import Request, SimulatorSettings
from ._search_app import HEALTH, SearchCall, SearchError, SearchSimulator
from ._search_corpus import Criteria, Page, ParsedQuery, highlight, parse_query, search

__all__ = ["GoogleSearchSettings", "GoogleSearchSimulator", "create_app"]

PATHS = {"/customsearch/v1": "search", "/customsearch/v1/siterestrict": "siterestrict"}
MAX_INDEX = 100
SERVICE = "customsearch.googleapis.com"
TEMPLATE = (
    "https://www.googleapis.com/customsearch/v1?q={searchTerms}&num={count?}&start={startIndex?}&lr={language?}"
    "&safe={safe?}&cx={cx?}&sort={sort?}&filter={filter?}&gl={gl?}&cr={cr?}&googlehost={googleHost?}"
    "&c2coff={disableCnTwTranslation?}&hq={hq?}&hl={hl?}&siteSearch={siteSearch?}"
    "&siteSearchFilter={siteSearchFilter?}&exactTerms={exactTerms?}&excludeTerms={excludeTerms?}"
    "&linkSite={linkSite?}&orTerms={orTerms?}&dateRestrict={dateRestrict?}&lowRange={lowRange?}"
    "&highRange={highRange?}&searchType={searchType}&fileType={fileType?}&rights={rights?}&imgSize={imgSize?}"
    "&imgType={imgType?}&imgColorType={imgColorType?}&imgDominantColor={imgDominantColor?}&alt=json"
)
INVALID_ARGUMENT = "Request contains an invalid argument."
KEY_INVALID = "API key not valid. Please pass a valid API key."
UNREGISTERED = ("Method doesn't allow unregistered callers (callers without established identity). Please use API "
                "Key or other form of API consumer identity to call this API.")
UNAUTHENTICATED = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                   "other valid authentication credential. See "
                   "https://developers.google.com/identity/sign-in/web/devconsole-project.")
QUOTA = (f"Quota exceeded for quota metric 'Queries' and limit 'Queries per day' of service '{SERVICE}' for "
         "consumer 'project_number:000000000000'.")
# status -> (google.rpc status, message, errors[].reason)
STATUS_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("INVALID_ARGUMENT", INVALID_ARGUMENT, "badRequest"),
    401: ("UNAUTHENTICATED", UNAUTHENTICATED, "authError"),
    403: ("PERMISSION_DENIED", "The caller does not have permission", "forbidden"),
    404: ("NOT_FOUND", "Requested entity was not found.", "notFound"),
    429: ("RESOURCE_EXHAUSTED", QUOTA, "rateLimitExceeded"),
    500: ("INTERNAL", "Internal error encountered.", "backendError"),
    503: ("UNAVAILABLE", "The service is currently unavailable.", "backendError"),
}
ENUMS: dict[str, tuple[str, ...]] = {
    "safe": ("active", "high", "medium", "off"),
    "searchType": ("image",),
    "siteSearchFilter": ("e", "i"),
    "imgSize": ("huge", "icon", "large", "medium", "small", "xlarge", "xxlarge"),
    "imgType": ("clipart", "face", "lineart", "stock", "photo", "animated"),
    "imgColorType": ("color", "gray", "mono", "trans"),
    "imgDominantColor": ("black", "blue", "brown", "gray", "green", "orange", "pink", "purple", "red", "teal",
                         "white", "yellow"),
}
INTEGERS = {"num": "TYPE_INT32", "start": "TYPE_UINT32", "snippetLength": "TYPE_INT32"}
# request parameter -> field of the query objects, for everything echoed only when given
ECHOED = (("lr", "language"), ("sort", "sort"), ("filter", "filter"), ("gl", "gl"), ("cr", "cr"),
          ("googlehost", "googleHost"), ("c2coff", "disableCnTwTranslation"), ("hq", "hq"), ("hl", "hl"),
          ("siteSearch", "siteSearch"), ("siteSearchFilter", "siteSearchFilter"), ("exactTerms", "exactTerms"),
          ("excludeTerms", "excludeTerms"), ("linkSite", "linkSite"), ("orTerms", "orTerms"),
          ("relatedSite", "relatedSite"), ("dateRestrict", "dateRestrict"), ("lowRange", "lowRange"),
          ("highRange", "highRange"), ("searchType", "searchType"), ("fileType", "fileType"), ("rights", "rights"),
          ("imgSize", "imgSize"), ("imgType", "imgType"), ("imgColorType", "imgColorType"),
          ("imgDominantColor", "imgDominantColor"))
_CX = re.compile(r"^[A-Za-z0-9:_-]{1,128}$")
_DATE_RESTRICT = re.compile(r"^([dwmy])(\d{1,5})$")
_DATE_SORT = re.compile(r"^date(?::([ads]))?(?::r:(\d{8}):(\d{8}))?$")
_HOURS = {"d": 24, "w": 24 * 7, "m": 24 * 31, "y": 24 * 365}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class GoogleSearchSettings:
    """`engines` maps each valid `cx` to its engine's title; None accepts any well-formed `cx`."""

    engines: dict[str, str] | None = None
    default_title: str = "YouRouter Simulated Search"


@dataclass(frozen=True)
class GoogleCall(SearchCall):
    params: dict[str, str] = field(default_factory=dict)
    query: ParsedQuery = field(default_factory=lambda: ParsedQuery(words=()))
    criteria: Criteria = field(default_factory=Criteria)
    cx: str = ""
    engine_title: str = ""
    num: int = 10
    start: int = 1
    images: bool = False


def error_envelope(status: int, message: str | None = None, reason: str | None = None,
                   details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Google's JSON error: `{"error": {"code", "message", "errors": [...], "status"[, "details"]}}`."""
    rpc_status, default_message, default_reason = STATUS_ERRORS.get(
        status, ("INTERNAL", "Internal error encountered.", "backendError") if status >= 500
        else ("INVALID_ARGUMENT", INVALID_ARGUMENT, "badRequest"))
    text = message or default_message
    error: dict[str, Any] = {"code": status, "message": text,
                             "errors": [{"message": text, "domain": "global", "reason": reason or default_reason}],
                             "status": rpc_status}
    if details:
        error["details"] = details
    return {"error": error}


def _invalid(message: str = INVALID_ARGUMENT, field_name: str | None = None) -> SearchError:
    details = None
    if field_name is not None:
        details = [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": field_name, "description": message}]}]
    return SearchError(400, error_envelope(400, message, details=details))


class GoogleSearchSimulator(SearchSimulator[GoogleCall]):
    """The ASGI application; `state` and `clock` are exposed for in-process use."""

    def __init__(self, settings: SimulatorSettings, google: GoogleSearchSettings | None = None) -> None:
        super().__init__(settings)
        self.google = google or GoogleSearchSettings()

    def route(self, request: Request) -> str:
        if request.path == "/health":
            return HEALTH
        route = PATHS.get(request.path.rstrip("/"))
        if route is None or request.method != "GET":
            raise SearchError(404, error_envelope(404, f"Method not found: {request.method} {request.path}."))
        return route

    def authenticate(self, request: Request, route: str) -> None:
        params = request.params()
        key = params.get("key") or request.headers.get("x-goog-api-key")
        authorization = request.headers.get("authorization", "")
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        token = token or params.get("access_token") or params.get("oauth_token")
        if not key and not token:
            raise SearchError(403, error_envelope(403, UNREGISTERED, "forbidden"))
        expected = self.settings.api_key
        if expected is None:
            return
        if key:
            if key != expected:
                details: list[dict[str, Any]] = [
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com", "metadata": {"service": SERVICE}},
                    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                     "message": KEY_INVALID}]
                raise SearchError(400, error_envelope(400, KEY_INVALID, "badRequest", details))
        elif token != expected:
            raise SearchError(401, error_envelope(401))

    def parse(self, request: Request, route: str) -> GoogleCall:
        params = request.params()
        numbers: dict[str, int] = {}
        for name, type_name in INTEGERS.items():
            if name in params:
                value = params[name]
                unsigned = type_name == "TYPE_UINT32"
                if not re.fullmatch(r"\d+" if unsigned else r"-?\d+", value):
                    raise _invalid(f"Invalid value at '{name}' ({type_name}), \"{value}\"", name)
                numbers[name] = int(value)
        enums: dict[str, str | None] = {}
        for name, allowed in ENUMS.items():
            value = params.get(name, "").strip().lower()
            if value and value != f"{name.lower()}undefined" and value not in allowed:
                raise _invalid()
            enums[name] = value if value in allowed else None
        q = params.get("q", "")
        cx = params.get("cx", "")
        if not q.strip() or not _CX.match(cx):
            raise _invalid()
        engines = self.google.engines
        if engines is not None and cx not in engines:
            raise _invalid()
        num = numbers.get("num", 10)
        start = max(numbers.get("start", 1), 1)
        if not 1 <= num <= 10 or start + num - 1 > MAX_INDEX:
            raise _invalid()
        if "snippetLength" in numbers and not 161 <= numbers["snippetLength"] <= 1000:
            raise _invalid()
        criteria = _criteria(params, enums)
        return GoogleCall(route=route, text=q, params=params, query=parse_query(_full_query(params, enums)),
                          criteria=criteria, cx=cx, engine_title=(engines or {}).get(cx, self.google.default_title),
                          num=num, start=start, images=criteria.images)

    def render(self, call: GoogleCall, now: datetime) -> tuple[object, Headers]:
        pages = search(call.query, call.criteria, now)
        total = len(pages)
        shown = pages[call.start - 1: call.start - 1 + call.num]
        seconds = 0.1 + int.from_bytes(hashlib.sha256(call.text.encode()).digest()[:4], "big") % 500_000 / 1e6
        queries: dict[str, Any] = {"request": [self._query_object(call, total, call.start)]}
        if call.start + call.num <= min(total, MAX_INDEX):
            queries["nextPage"] = [self._query_object(call, total, call.start + call.num)]
        if call.start > 1:
            queries["previousPage"] = [self._query_object(call, total, max(1, call.start - call.num))]
        payload: dict[str, Any] = {
            "kind": "customsearch#search",
            "url": {"type": "application/json", "template": TEMPLATE},
            "queries": queries,
            "context": {"title": call.engine_title},
            "searchInformation": {"searchTime": round(seconds, 6), "formattedSearchTime": f"{seconds:.2f}",
                                  "totalResults": str(total), "formattedTotalResults": f"{total:,}"},
        }
        if shown:
            terms = call.query.highlight_terms
            payload["items"] = [_image_item(page, terms) if call.images else _web_item(page, terms, now)
                                for page in shown]
        return payload, []

    def fault_error(self, status: int, retry_after: float | None) -> SearchError:
        details = None
        if status == 429:
            details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                        "domain": "googleapis.com",
                        "metadata": {"service": SERVICE, "consumer": "projects/000000000000",
                                     "quota_metric": f"{SERVICE}/queries", "quota_limit": "DailyQueriesPerProject",
                                     "quota_limit_value": "100", "quota_location": "global",
                                     "quota_unit": "1/d/{project}"}}]
        return SearchError(status, error_envelope(status, details=details))

    def _query_object(self, call: GoogleCall, total: int, start: int) -> dict[str, Any]:
        params = call.params
        obj: dict[str, Any] = {"title": f"Google Custom Search - {call.text}", "totalResults": str(total),
                               "searchTerms": call.text, "count": call.num, "startIndex": start,
                               "inputEncoding": "utf8", "outputEncoding": "utf8", "safe": params.get("safe", "off"),
                               "cx": call.cx}
        for name, field_name in ECHOED:
            if params.get(name):
                obj[field_name] = params[name]
        return obj


def _full_query(params: dict[str, str], enums: dict[str, str | None]) -> str:
    """`q` with the refinement parameters appended as the operators they stand for, so Google(q, siteSearch=x)
    yields the same pages as Brave(q site:x)."""
    parts = [params["q"]]
    if params.get("hq"):
        parts.append(params["hq"])
    if params.get("exactTerms"):
        parts.append(f'"{params["exactTerms"]}"')
    for term in params.get("excludeTerms", "").split():
        parts.append(f"-{term}")
    if params.get("siteSearch"):
        parts.append(("-site:" if enums["siteSearchFilter"] == "e" else "site:") + params["siteSearch"])
    if params.get("fileType"):
        parts.append(f"filetype:{params['fileType']}")
    return " ".join(parts)


def _criteria(params: dict[str, str], enums: dict[str, str | None]) -> Criteria:
    max_age: int | None = None
    restrict = params.get("dateRestrict", "")
    if restrict:
        match = _DATE_RESTRICT.match(restrict.lower())
        if match is None or int(match.group(2)) < 1:
            raise _invalid()
        max_age = _HOURS[match.group(1)] * int(match.group(2))
    sort_match = _DATE_SORT.match(params.get("sort", "").lower())
    since = until = None
    if sort_match is not None and sort_match.group(2):
        try:
            since = datetime.strptime(sort_match.group(2), "%Y%m%d")
            until = datetime.strptime(sort_match.group(3), "%Y%m%d") + timedelta(days=1)
        except ValueError as exc:
            raise _invalid() from exc
    return Criteria(max_age_hours=max_age, since=since, until=until, safe=enums["safe"] in ("active", "high", "medium"),
                    any_of=tuple(params.get("orTerms", "").split()), sort_by_date=sort_match is not None,
                    oldest_first=sort_match is not None and sort_match.group(1) == "a",
                    images=enums["searchType"] == "image", img_size=enums["imgSize"], img_type=enums["imgType"],
                    img_color_type=enums["imgColorType"], img_dominant=enums["imgDominantColor"])


def _web_item(page: Page, terms: tuple[str, ...], now: datetime) -> dict[str, Any]:
    published = page.published(now)
    snippet = page.snippet
    if page.age_hours < 24 * 365:
        snippet = f"{_MONTHS[published.month - 1]} {published.day}, {published.year} ... {snippet}"
    item: dict[str, Any] = {"kind": "customsearch#result", "title": page.title,
                            "htmlTitle": highlight(page.title, terms, "b"), "link": page.url,
                            "displayLink": page.host, "snippet": snippet, "htmlSnippet": highlight(snippet, terms, "b")}
    if page.file_type == "pdf":
        item["mime"] = "application/pdf"
        item["fileFormat"] = "PDF/Adobe Acrobat"
    else:
        item["cacheId"] = hashlib.sha256(page.url.encode()).hexdigest()[:12]
    item["formattedUrl"] = page.url
    item["htmlFormattedUrl"] = highlight(page.url, terms, "b")
    metatags = {"og:title": page.title, "og:description": page.snippet, "og:url": page.url, "og:site_name": page.site,
                "og:type": "article", "article:published_time": published.isoformat() + "Z"}
    pagemap: dict[str, Any] = {}
    if page.has_thumbnail:
        width, height = page.image.thumbnail(225)
        pagemap["cse_thumbnail"] = [{"src": _thumbnail_link(page.image.url), "width": str(width),
                                     "height": str(height)}]
        metatags["og:image"] = page.image.url
    pagemap["metatags"] = [metatags]
    if page.has_thumbnail:
        pagemap["cse_image"] = [{"src": page.image.url}]
    item["pagemap"] = pagemap
    return item


def _image_item(page: Page, terms: tuple[str, ...]) -> dict[str, Any]:
    image = page.image
    width, height = image.thumbnail(150)
    return {"kind": "customsearch#result", "title": page.title, "htmlTitle": highlight(page.title, terms, "b"),
            "link": image.url, "displayLink": page.host, "snippet": page.title,
            "htmlSnippet": highlight(page.title, terms, "b"), "mime": image.mime, "fileFormat": image.mime,
            "image": {"contextLink": page.url, "height": image.height, "width": image.width,
                      "byteSize": image.byte_size, "thumbnailLink": _thumbnail_link(image.url),
                      "thumbnailHeight": height, "thumbnailWidth": width}}


def _thumbnail_link(url: str) -> str:
    return "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9Gc" + hashlib.sha256(url.encode()).hexdigest()[:40]


def create_app(settings: SimulatorSettings, google: GoogleSearchSettings | None = None) -> GoogleSearchSimulator:
    """Build the simulator ASGI app (an `async (scope, receive, send)` callable that also handles lifespan)."""
    return GoogleSearchSimulator(settings, google)
