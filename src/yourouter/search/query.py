"""A web search as Google's Custom Search JSON API defines its query, validated the way Google validates it."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from yourouter.ir.errors import ErrorKind, GatewayError

_ENUMS = {
    "safe": ("active", "off", "high", "medium"),
    "siteSearchFilter": ("i", "e"),
    "searchType": ("image",),
    "filter": ("0", "1"),
    "c2coff": ("0", "1"),
    "imgSize": ("huge", "icon", "large", "medium", "small", "xlarge", "xxlarge"),
    "imgType": ("clipart", "face", "lineart", "stock", "photo", "animated"),
    "imgColorType": ("color", "gray", "mono", "trans"),
    "imgDominantColor": ("black", "blue", "brown", "gray", "green", "orange", "pink", "purple", "red", "teal",
                         "white", "yellow"),
}
_DATE_RESTRICT = re.compile(r"^[dwmy]\d+$")
#: Google's own parameters that say nothing about the search (auth, response format, tracing).
_TRANSPORT = frozenset({"key", "access_token", "alt", "fields", "prettyPrint", "quotaUser", "callback", "userIp",
                        "$.xgafv", "upload_protocol", "uploadType"})


class SearchError(GatewayError):
    """A bad search, answered in Google's envelope (`reason` goes in `errors[0].reason`)."""

    def __init__(self, status: int, kind: ErrorKind, message: str, reason: str, param: str | None = None) -> None:
        super().__init__(status, kind, message, code=reason, param=param)
        self.reason = reason


def invalid(message: str, param: str | None = None) -> SearchError:
    return SearchError(400, ErrorKind.INVALID_REQUEST, message, "invalid", param)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    q: str
    num: int = 10
    start: int = 1
    cx: str | None = None
    safe: str = "off"
    lr: str | None = None
    hl: str | None = None
    gl: str | None = None
    cr: str | None = None
    siteSearch: str | None = None  # noqa: N815 (Google's names, kept for clarity)
    siteSearchFilter: str | None = None  # noqa: N815
    dateRestrict: str | None = None  # noqa: N815
    exactTerms: str | None = None  # noqa: N815
    excludeTerms: str | None = None  # noqa: N815
    orTerms: str | None = None  # noqa: N815
    hq: str | None = None
    linkSite: str | None = None  # noqa: N815
    fileType: str | None = None  # noqa: N815
    filter: str | None = None
    sort: str | None = None
    rights: str | None = None
    searchType: str | None = None  # noqa: N815
    imgSize: str | None = None  # noqa: N815
    imgType: str | None = None  # noqa: N815
    imgColorType: str | None = None  # noqa: N815
    imgDominantColor: str | None = None  # noqa: N815
    lowRange: str | None = None  # noqa: N815
    highRange: str | None = None  # noqa: N815
    c2coff: str | None = None

    @property
    def images(self) -> bool:
        return self.searchType == "image"

    def params(self) -> dict[str, str]:
        """The query as Google's parameters (what a Google upstream receives, and the cache key)."""
        out = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None:
                out[item.name] = str(value)
        return out

    def operators(self) -> str:
        """The query with Google's refinement parameters written as search operators, for engines that only take
        a query string (Brave, SearXNG)."""
        terms = [self.q]
        if self.exactTerms:
            terms.append(f'"{self.exactTerms}"')
        if self.excludeTerms:
            terms += [f"-{term}" for term in self.excludeTerms.split()]
        if self.orTerms:
            terms.append("(" + " OR ".join(self.orTerms.split()) + ")")
        if self.hq:
            terms.append(self.hq)
        if self.siteSearch:
            terms.append(("-site:" if self.siteSearchFilter == "e" else "site:") + self.siteSearch)
        if self.fileType:
            terms.append(f"filetype:{self.fileType}")
        return " ".join(terms)


_NAMES = {item.name for item in fields(SearchQuery)}
_IGNORED = frozenset({"googlehost", "relatedSite", "snippetLength"})  # deprecated or limited to some engines


def _int(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"Invalid value '{raw}' for {name}: it must be an integer.", name) from None


def parse_query(params: dict[str, str]) -> SearchQuery:
    """A `cse.list` query string as Google checks it: out-of-range values are a 400, never silently clamped."""
    q = params.get("q", "")
    if not q.strip():
        raise invalid("Missing required parameter: q", "q")
    num = _int(params, "num", 10)
    start = _int(params, "start", 1)
    if not 1 <= num <= 10:
        raise invalid(f"Invalid value '{num}'. Values must be within the range: [1, 10]", "num")
    if start < 0:
        raise invalid(f"Invalid value '{start}'. Values must be greater than or equal to 1.", "start")
    start = max(start, 1)  # Google takes start=0 as 1
    if start + num - 1 > 100:  # the API never returns results beyond the 100th
        raise invalid("Request contains an invalid argument: the API returns at most 100 results "
                      f"(results {start} to {start + num - 1} were asked for).", "start")
    for name, allowed in _ENUMS.items():
        value = params.get(name)
        if value is not None and value not in allowed:
            raise invalid(f"Invalid value '{value}' for {name}: must be one of {', '.join(allowed)}.", name)
    date = params.get("dateRestrict")
    if date is not None and not _DATE_RESTRICT.match(date):
        raise invalid(f"Invalid value '{date}' for dateRestrict: expected d[N], w[N], m[N] or y[N].",
                      "dateRestrict")
    values: dict[str, object] = {}
    for name, value in params.items():
        if name in _TRANSPORT or name in _IGNORED or name in ("num", "start"):
            continue
        if name not in _NAMES:
            raise invalid(f"Unknown parameter: {name}", name)
        values[name] = value
    return SearchQuery(**values, num=num, start=start)  # type: ignore[arg-type]
