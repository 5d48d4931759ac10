"""The web-search simulators (Google Custom Search, Brave, SearXNG) over a real socket: Google driven by the official
`google-api-python-client`, Brave and SearXNG by plain HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("googleapiclient")

from googleapiclient.discovery import build  # noqa: E402
from googleapiclient.errors import HttpError  # noqa: E402

from yourouter.simulators._search_corpus import Criteria, parse_query, search, size_class  # noqa: E402
from yourouter.simulators.background import serve_in_thread  # noqa: E402
from yourouter.simulators.combined import create_app as create_combined  # noqa: E402
from yourouter.simulators.google_search import GoogleSearchSettings  # noqa: E402
from yourouter.simulators.google_search import create_app as create_google  # noqa: E402
from yourouter.simulators.openai import SimulatorSettings  # noqa: E402
from yourouter.simulators.searxng import SearxngSettings  # noqa: E402
from yourouter.simulators.searxng import create_app as create_searxng  # noqa: E402

KEY = "search-sim-key"
CX = "0123456789abcdef0:sim"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Server:
    url: str

    def get(self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
            method: str = "GET", data: bytes | None = None) -> Response:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        request = urllib.request.Request(self.url + path + query, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Response(response.status, _lower(response.headers), _decode(response.read()))
        except urllib.error.HTTPError as error:
            return Response(error.code, _lower(error.headers), _decode(error.read()))

    def google(self, key: str = KEY) -> Any:
        return build("customsearch", "v1", developerKey=key, client_options={"api_endpoint": self.url},
                     static_discovery=True).cse()

    def brave(self, path: str = "/res/v1/web/search", token: str | None = KEY, **params: Any) -> Response:
        return self.get(path, params, {"X-Subscription-Token": token} if token is not None else {})

    def searxng(self, bearer: str | None = KEY, **params: Any) -> Response:
        return self.get("/search", params, {"Authorization": f"Bearer {bearer}"} if bearer else {})


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve_in_thread(create_combined(SimulatorSettings(api_key=KEY))) as url:
        yield Server(url)


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        server: Server = request.getfixturevalue("server")
        server.get("/_sim/faults", method="DELETE")


def _error(exc: HttpError) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.content)["error"]
    return body


# Google Custom Search, through google-api-python-client ---------------------------------------------------------

def test_google_results_have_googles_shape(server: Server) -> None:
    result = server.google().list(q="python asyncio", cx=CX, num=3).execute()
    assert result["kind"] == "customsearch#search"
    assert result["url"]["type"] == "application/json" and "{searchTerms}" in result["url"]["template"]
    request = result["queries"]["request"][0]
    assert request["searchTerms"] == "python asyncio" and request["count"] == 3 and request["startIndex"] == 1
    assert request["cx"] == CX and request["safe"] == "off" and request["inputEncoding"] == "utf8"
    assert "previousPage" not in result["queries"] and result["queries"]["nextPage"][0]["startIndex"] == 4
    info = result["searchInformation"]
    assert isinstance(info["totalResults"], str) and isinstance(info["searchTime"], float)
    assert int(info["totalResults"]) >= 40 and info["formattedTotalResults"] == f"{int(info['totalResults']):,}"
    assert result["context"] == {"title": "YouRouter Simulated Search"}
    assert len(result["items"]) == 3
    for item in result["items"]:
        assert item["kind"] == "customsearch#result"
        assert item["link"].startswith("https://") and item["displayLink"] == urllib.parse.urlparse(item["link"]).netloc
        assert "<b>" in item["htmlTitle"] and "<b>" in item["htmlSnippet"]
        assert "python" in item["snippet"].lower() and "metatags" in item["pagemap"]
        assert item["formattedUrl"] == item["link"]


def test_google_pages_through_next_page_to_the_end(server: Server) -> None:
    cse = server.google()
    links: list[str] = []
    start = 1
    pages = 0
    while True:
        result = cse.list(q="rust ownership [sim:results=23]", cx=CX, num=10, start=start).execute()
        links += [item["link"] for item in result["items"]]
        pages += 1
        assert ("previousPage" in result["queries"]) == (start > 1)
        if "nextPage" not in result["queries"]:
            break
        start = result["queries"]["nextPage"][0]["startIndex"]
    assert pages == 3 and len(links) == 23 == len(set(links))
    assert result["queries"]["previousPage"][0]["startIndex"] == 11
    # Stable across calls: page 2 again is the same.
    again = cse.list(q="rust ownership [sim:results=23]", cx=CX, num=10, start=11).execute()
    assert [item["link"] for item in again["items"]] == links[10:20]


def test_google_caps_at_result_100_like_google(server: Server) -> None:
    cse = server.google()
    last = cse.list(q="deep corpus [sim:results=150]", cx=CX, num=10, start=91).execute()
    assert last["searchInformation"]["totalResults"] == "150" and len(last["items"]) == 10
    assert "nextPage" not in last["queries"]
    offered = cse.list(q="deep corpus [sim:results=150]", cx=CX, num=10, start=81).execute()
    assert offered["queries"]["nextPage"][0]["startIndex"] == 91
    for start, num in ((92, 10), (100, 2)):
        with pytest.raises(HttpError) as info:
            cse.list(q="deep corpus", cx=CX, num=num, start=start).execute()
        assert info.value.status_code == 400
    assert cse.list(q="deep corpus", cx=CX, num=1, start=100).execute()["queries"]["request"][0]["startIndex"] == 100


@pytest.mark.parametrize("num", [0, 11, -1])
def test_google_rejects_num_outside_1_to_10(server: Server, num: int) -> None:
    with pytest.raises(HttpError) as info:
        server.google().list(q="python", cx=CX, num=num).execute()
    assert info.value.status_code == 400
    error = _error(info.value)
    assert error == {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT",
                     "errors": [{"message": "Request contains an invalid argument.", "domain": "global",
                                 "reason": "badRequest"}]}


def test_google_zero_results_omit_items(server: Server) -> None:
    for q in ("zzzznoresults at all", "python [sim:empty]"):
        result = server.google().list(q=q, cx=CX).execute()
        assert "items" not in result and "nextPage" not in result["queries"]
        assert result["searchInformation"]["totalResults"] == "0"
        assert result["queries"]["request"][0]["totalResults"] == "0"


def test_google_wrong_and_missing_key(server: Server) -> None:
    with pytest.raises(HttpError) as info:
        server.google(key="not-the-key").list(q="python", cx=CX).execute()
    assert info.value.status_code == 400
    error = _error(info.value)
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["errors"][0]["reason"] == "badRequest"
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    assert error["details"][0]["metadata"] == {"service": "customsearch.googleapis.com"}
    missing = server.get("/customsearch/v1", {"q": "python", "cx": CX})
    assert missing.status == 403 and missing.body["error"]["status"] == "PERMISSION_DENIED"
    assert missing.body["error"]["errors"][0]["reason"] == "forbidden"
    header = server.get("/customsearch/v1", {"q": "python", "cx": CX}, {"x-goog-api-key": KEY})
    assert header.status == 200


def test_google_type_errors_and_missing_parameters(server: Server) -> None:
    bad = server.get("/customsearch/v1", {"q": "python", "cx": CX, "num": "abc", "key": KEY})
    assert bad.status == 400
    assert bad.body["error"]["message"] == "Invalid value at 'num' (TYPE_INT32), \"abc\""
    assert bad.body["error"]["details"][0]["fieldViolations"][0]["field"] == "num"
    for params in ({"cx": CX}, {"q": "python"}, {"q": "python", "cx": CX, "safe": "strict"},
                   {"q": "python", "cx": CX, "dateRestrict": "x3"}, {"q": "python", "cx": CX, "snippetLength": "50"}):
        response = server.get("/customsearch/v1", {**params, "key": KEY})
        assert response.status == 400 and response.body["error"]["status"] == "INVALID_ARGUMENT", params


def test_google_image_search(server: Server) -> None:
    result = server.google().list(q="red panda", cx=CX, num=10, searchType="image", imgSize="LARGE").execute()
    assert result["queries"]["request"][0]["searchType"] == "image"
    assert result["items"]
    for item in result["items"]:
        image = item["image"]
        assert item["mime"].startswith("image/") and item["fileFormat"] == item["mime"]
        assert item["link"] != image["contextLink"] and image["contextLink"].startswith("https://")
        assert size_class(image["width"], image["height"]) == "large"
        assert image["thumbnailLink"].startswith("https://encrypted-tbn0.gstatic.com/")
        assert 0 < image["thumbnailWidth"] <= 150 and image["byteSize"] > 0
        assert "cacheId" not in item and "pagemap" not in item


def test_google_site_search_filters_the_same_corpus(server: Server) -> None:
    cse = server.google()
    everything = [item["link"] for item in cse.list(q="kubernetes [sim:results=30]", cx=CX, num=10).execute()["items"]]
    only = cse.list(q="kubernetes [sim:results=30]", cx=CX, siteSearch="github.com", siteSearchFilter="i").execute()
    assert only["items"] and all(item["displayLink"] == "github.com" for item in only["items"])
    assert only["queries"]["request"][0]["siteSearch"] == "github.com"
    without = cse.list(q="kubernetes [sim:results=30]", cx=CX, siteSearch="github.com", siteSearchFilter="e").execute()
    assert all(item["displayLink"] != "github.com" for item in without["items"])
    in_q = cse.list(q="kubernetes site:github.com [sim:results=30]", cx=CX).execute()
    assert [item["link"] for item in in_q["items"]] == [item["link"] for item in only["items"]]
    kept = [link for link in everything if urllib.parse.urlparse(link).netloc != "github.com"]
    assert [item["link"] for item in without["items"]][:len(kept)] == kept


def test_google_refinements_and_dates(server: Server) -> None:
    cse = server.google()
    recent = cse.list(q="solar power [sim:results=100]", cx=CX, dateRestrict="w1", num=10).execute()
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=7, hours=2)
    assert recent["items"]
    for item in recent["items"]:
        published = datetime.fromisoformat(item["pagemap"]["metatags"][0]["article:published_time"].rstrip("Z"))
        assert published >= cutoff
    pdfs = cse.list(q="solar power", cx=CX, fileType="pdf").execute()
    assert pdfs["items"] and all(item["mime"] == "application/pdf" for item in pdfs["items"])
    excluded = cse.list(q="solar power [sim:results=60]", cx=CX, excludeTerms="wikipedia tutorial").execute()
    assert all("wikipedia" not in (item["title"] + item["snippet"]).lower() for item in excluded["items"])
    assert all("tutorial" not in (item["title"] + item["snippet"]).lower() for item in excluded["items"])
    echoed = cse.list(q="solar power", cx=CX, lr="lang_de", gl="de", hl="de").execute()["queries"]["request"][0]
    assert (echoed["language"], echoed["gl"], echoed["hl"]) == ("lang_de", "de", "de")


def test_google_siterestrict_and_faults(server: Server) -> None:
    cse = server.google()
    assert cse.siterestrict().list(q="python", cx=CX, num=1).execute()["items"]
    with pytest.raises(HttpError) as info:
        cse.list(q="python [sim:status=429]", cx=CX).execute()
    assert info.value.status_code == 429
    error = _error(info.value)
    assert error["status"] == "RESOURCE_EXHAUSTED" and error["errors"][0]["reason"] == "rateLimitExceeded"
    assert "Queries per day" in error["message"]
    queued = server.get("/_sim/google-search/faults", method="POST",
                        data=json.dumps({"kind": "status", "status": 503}).encode(),
                        headers={"Content-Type": "application/json"})
    assert queued.status == 200
    with pytest.raises(HttpError) as info:
        cse.list(q="python", cx=CX).execute()
    assert info.value.status_code == 503 and _error(info.value)["status"] == "UNAVAILABLE"
    assert cse.list(q="python", cx=CX, num=1).execute()["items"]


def test_google_known_engines_only() -> None:
    settings = GoogleSearchSettings(engines={"my-cx": "My engine"})
    with serve_in_thread(create_google(SimulatorSettings(), settings)) as url:
        cse = Server(url).google(key="any-key")
        assert cse.list(q="python", cx="my-cx", num=1).execute()["context"] == {"title": "My engine"}
        with pytest.raises(HttpError) as info:
            cse.list(q="python", cx="other", num=1).execute()
        assert info.value.status_code == 400


# Brave ----------------------------------------------------------------------------------------------------------

def test_brave_web_shape_and_rate_headers(server: Server) -> None:
    response = server.brave(q="python asyncio", count=5, extra_snippets="true")
    assert response.status == 200
    body = response.body
    assert body["type"] == "search" and body["web"]["type"] == "search"
    assert body["query"]["original"] == "python asyncio" and body["query"]["more_results_available"] is True
    assert [ref["index"] for ref in body["mixed"]["main"]] == [0, 1, 2, 3, 4]
    results = body["web"]["results"]
    assert len(results) == 5
    for result in results:
        assert {"title", "url", "description", "page_age", "age", "profile", "language", "family_friendly",
                "meta_url", "type", "extra_snippets"} <= set(result)
        assert result["meta_url"]["hostname"] == urllib.parse.urlparse(result["url"]).netloc
        assert result["meta_url"]["path"].startswith("› ") and "<strong>" in result["description"]
        assert datetime.fromisoformat(result["page_age"]) and len(result["extra_snippets"]) == 3
    assert response.headers["x-ratelimit-limit"] == "50, 0"
    assert {"x-ratelimit-policy", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(response.headers)
    plain = server.brave(q="python asyncio", count=1, text_decorations="false").body["web"]["results"][0]
    assert "<strong>" not in plain["description"]


def test_brave_auth_is_checked_first(server: Server) -> None:
    missing = server.brave(token=None, q="python")
    assert missing.status == 422 and missing.body["type"] == "ErrorResponse"
    assert missing.body["error"]["code"] == "VALIDATION"
    assert missing.body["error"]["meta"]["errors"][0]["loc"] == ["header", "x-subscription-token"]
    wrong = server.brave(token="nope", q="python", count=99)
    assert wrong.status == 422 and wrong.body["error"]["code"] == "SUBSCRIPTION_TOKEN_INVALID"
    assert wrong.body["error"]["meta"] == {"component": "authentication"}
    assert set(wrong.body) == {"type", "error", "time"} and wrong.body["error"]["status"] == 422


def test_brave_validation_errors_all_at_once(server: Server) -> None:
    response = server.brave(q="python", count=21, offset=10, safesearch="high", country="GE", search_lang="zh",
                            spellcheck="maybe")
    assert response.status == 422
    error = response.body["error"]
    assert error["code"] == "VALIDATION" and error["detail"] == "Unable to validate request parameter(s)"
    by_field = {tuple(e["loc"]): e for e in error["meta"]["errors"]}
    assert by_field[("query", "count")]["type"] == "less_than_equal" and by_field[("query", "count")]["ctx"] == {
        "le": 20}
    assert by_field[("query", "offset")]["ctx"] == {"le": 9}
    assert by_field[("query", "safesearch")]["msg"] == "Input should be 'off', 'moderate' or 'strict'"
    assert {("query", "country"), ("query", "search_lang"), ("query", "spellcheck")} <= set(by_field)
    assert server.brave(q="python", search_lang="zh-hans", country="de", ui_lang="de-DE").status == 200
    missing = server.brave()
    assert missing.status == 422 and missing.body["error"]["meta"]["errors"][0]["type"] == "missing"
    too_long = server.brave(q=" ".join(["word"] * 51))
    assert too_long.status == 422


def test_brave_offset_is_a_page_index(server: Server) -> None:
    q = "graph databases [sim:results=27]"
    urls = [r["url"] for offset in range(3) for r in server.brave(q=q, count=10, offset=offset).body["web"]["results"]]
    assert len(urls) == 27 == len(set(urls))
    last = server.brave(q=q, count=10, offset=2).body
    assert last["query"]["more_results_available"] is False and len(last["web"]["results"]) == 7
    beyond = server.brave(q=q, count=10, offset=3).body
    assert "web" not in beyond and beyond["mixed"]["main"] == []
    empty = server.brave(q="zzzznoresults").body
    assert "web" not in empty and empty["query"]["more_results_available"] is False


def test_brave_operators_filter_the_corpus(server: Server) -> None:
    base = "machine learning [sim:results=80]"
    everything = [r["url"] for offset in range(4) for r in server.brave(q=base, offset=offset).body["web"]["results"]]
    site = server.brave(q=f"{base} site:arxiv.org").body
    assert site["query"]["search_operators"] == {"applied": True, "cleaned_query": "machine learning",
                                                 "sites": ["arxiv.org"]}
    assert site["web"]["results"] and all(r["meta_url"]["hostname"] == "arxiv.org" for r in site["web"]["results"])
    not_site = server.brave(q=f"{base} -site:arxiv.org").body["web"]["results"]
    assert all(r["meta_url"]["hostname"] != "arxiv.org" for r in not_site)
    pdf = server.brave(q=f"{base} filetype:pdf").body["web"]["results"]
    assert pdf and all(r["url"].endswith(".pdf") or "/pdf/" in r["url"] for r in pdf)
    phrase = [r["url"] for offset in range(4)
              for r in server.brave(q='"machine learning" [sim:results=80]', offset=offset).body.get("web", {}).get(
                  "results", [])]
    assert len(everything) == 80 and 0 < len(phrase) < 80 and phrase == [u for u in everything if u in set(phrase)]
    minus = server.brave(q=f"{base} -wikipedia -tutorial").body["web"]["results"]
    assert all("tutorial" not in (r["title"] + r["description"]).lower() for r in minus)
    assert all("wikipedia" not in r["url"] for r in minus)


def test_brave_freshness(server: Server) -> None:
    day = server.brave(q="election results [sim:results=120]", freshness="pw").body["web"]["results"]
    assert day and all(r["age"].endswith("ago") for r in day)
    assert server.brave(q="election", freshness="lastweek").status == 422
    ranged = server.brave(q="election results [sim:results=120]", freshness="2000-01-01to2000-12-31").body
    assert "web" not in ranged


def test_brave_images(server: Server) -> None:
    body = server.brave("/res/v1/images/search", q="red panda [sim:results=120]").body
    assert body["type"] == "images" and len(body["results"]) == 50
    first = body["results"][0]
    assert first["type"] == "image_result" and first["source"] == first["meta_url"]["hostname"]
    assert first["thumbnail"]["src"].startswith("https://imgs.search.brave.com/")
    assert first["properties"]["url"].startswith("https://") and first["properties"]["width"] > 0
    assert len(server.brave("/res/v1/images/search", q="red panda [sim:results=300]", count=200).body["results"]) == 200
    assert server.brave("/res/v1/images/search", q="red panda", count=201).status == 422
    assert server.brave("/res/v1/images/search", q="red panda", safesearch="moderate").status == 422


def test_brave_faults(server: Server) -> None:
    limited = server.brave(q="python [sim:status=429]")
    assert limited.status == 429 and limited.body["error"]["code"] == "RATE_LIMITED"
    assert limited.headers["x-ratelimit-remaining"].startswith("0") and "x-ratelimit-reset" in limited.headers
    assert limited.body["error"]["meta"]["component"] == "rate_limiter"
    broken = server.brave(q="python [sim:midstream_error=1]")
    assert broken.status == 500 and broken.body["type"] == "ErrorResponse"
    with pytest.raises((urllib.error.URLError, ConnectionError, json.JSONDecodeError, ValueError, OSError)):
        request = urllib.request.Request(server.url + "/res/v1/web/search?q=python+%5Bsim%3Adisconnect%5D",
                                         headers={"X-Subscription-Token": KEY})
        urllib.request.urlopen(request, timeout=5).read()


def test_brave_post_body(server: Server) -> None:
    response = server.get("/res/v1/web/search", method="POST", data=json.dumps({"q": "python", "count": 2}).encode(),
                          headers={"X-Subscription-Token": KEY, "Content-Type": "application/json"})
    assert response.status == 200 and len(response.body["web"]["results"]) == 2


# SearXNG ---------------------------------------------------------------------------------------------------------

def test_searxng_json_shape_and_paging(server: Server) -> None:
    q = "open source llm [sim:results=25]"
    first = server.searxng(q=q, format="json").body
    assert set(first) == {"query", "number_of_results", "results", "answers", "corrections", "infoboxes",
                          "suggestions", "unresponsive_engines"}
    assert first["query"] == q and first["number_of_results"] == 25 and len(first["results"]) == 10
    result = first["results"][0]
    assert result["template"] == "default.html" and result["category"] == "general"
    assert result["engine"] == result["engines"][0] and len(result["positions"]) == len(result["engines"])
    assert result["parsed_url"][1] == urllib.parse.urlparse(result["url"]).netloc and result["score"] > 0
    assert datetime.fromisoformat(result["publishedDate"])
    urls = [r["url"] for page in (1, 2, 3) for r in server.searxng(q=q, format="json", pageno=page).body["results"]]
    assert len(urls) == 25 == len(set(urls))
    assert server.searxng(q=q, format="json", pageno=4).body["results"] == []


def test_searxng_format_and_parameter_errors(server: Server) -> None:
    for params in ({"q": "python"}, {"q": "python", "format": "csv"}, {"q": "python", "format": "xml"}):
        forbidden = server.searxng(**params)
        assert forbidden.status == 403 and "403 Forbidden" in forbidden.body and forbidden.headers[
            "content-type"].startswith("text/html")
    cases = {(("format", "json"),): (400, "No query"),
             (("q", "x"), ("format", "json"), ("pageno", "0")): (400, 'Invalid value "0" for parameter pageno'),
             (("q", "x"), ("format", "json"), ("safesearch", "x")): (400, 'Invalid value "x" for parameter safesearch'),
             (("q", "x"), ("format", "json"), ("safesearch", "5")): (500, "search error"),
             (("q", "x"), ("format", "json"), ("time_range", "decade")):
                 (400, 'Invalid value "decade" for parameter time_range'),
             (("q", "x"), ("format", "json"), ("language", "english")):
                 (400, 'Invalid value "english" for parameter language')}
    for params, (status, message) in cases.items():
        response = server.searxng(**dict(params))
        assert (response.status, response.body) == (status, {"error": message}), params
    assert server.searxng(q="x", format="json", language="en-US", categories="bogus,general").status == 200


def test_searxng_auth_and_disabled_json() -> None:
    with serve_in_thread(create_searxng(SimulatorSettings(api_key=KEY))) as url:
        assert Server(url).searxng(bearer=None, q="python", format="json").status == 401
        assert Server(url).searxng(bearer="wrong", q="python", format="json").status == 401
        assert Server(url).searxng(q="python", format="json").status == 200
    with serve_in_thread(create_searxng(SimulatorSettings(), SearxngSettings(json_enabled=False, page_size=5))) as url:
        assert Server(url).searxng(bearer=None, q="python", format="json").status == 403


def test_searxng_images_engines_post_and_unresponsive(server: Server) -> None:
    images = server.searxng(q="red panda", format="json", categories="images").body["results"]
    assert images and all(r["template"] == "images.html" and r["img_src"].startswith("https://") for r in images)
    assert " x " in images[0]["resolution"] and images[0]["category"] == "images"
    only = server.searxng(q="red panda [sim:results=60]", format="json", engines="wikipedia,google").body["results"]
    assert only and all(set(r["engines"]) <= {"wikipedia", "google"} for r in only)
    posted = server.get("/search", method="POST", data=b"q=python&format=json&pageno=2",
                        headers={"Authorization": f"Bearer {KEY}",
                                 "Content-Type": "application/x-www-form-urlencoded"})
    assert posted.status == 200 and len(posted.body["results"]) == 10
    down = server.searxng(q="python [sim:unresponsive]", format="json").body
    assert down["results"] == [] and down["number_of_results"] == 0
    assert down["unresponsive_engines"] and all(len(entry) == 2 for entry in down["unresponsive_engines"])
    limited = server.searxng(q="python [sim:status=429]", format="json")
    assert limited.status == 429 and limited.body == "Too Many Requests"


# Shared corpus --------------------------------------------------------------------------------------------------

def test_the_three_engines_return_the_same_pages(server: Server) -> None:
    q = "vector search engines"
    google = [item["link"] for item in server.google().list(q=q, cx=CX, num=10).execute()["items"]]
    brave = [r["url"] for r in server.brave(q=q, count=10).body["web"]["results"]]
    searxng = [r["url"] for r in server.searxng(q=q, format="json").body["results"]]
    assert google == brave == searxng and len(google) == 10
    google_site = [i["link"] for i in server.google().list(q=q, cx=CX, siteSearch="medium.com").execute()["items"]]
    brave_site = [r["url"] for r in server.brave(q=f"{q} site:medium.com").body["web"]["results"]]
    assert google_site == brave_site[:10] and google_site


def test_corpus_is_deterministic_and_filters_are_subsets() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    query = parse_query('Quantum computing -tutorial site:github.com "quantum computing" [sim:results=7]')
    assert query.words == ("Quantum", "computing") and query.key == "quantum computing"
    assert (query.excluded, query.sites, query.phrases, query.size) == (("tutorial",), ("github.com",),
                                                                        ("quantum computing",), 7)
    plain = search(parse_query("quantum computing"), Criteria(), now)
    assert [p.url for p in plain] == [p.url for p in search(parse_query("Quantum   Computing"), Criteria(), now)]
    assert all("quantum computing" in p.text or ("quantum" in p.text and "computing" in p.text) for p in plain)
    recent = search(parse_query("quantum computing"), Criteria(max_age_hours=24 * 31), now)
    assert recent and [p for p in plain if p in recent] == recent
    assert search(parse_query("quantum zzzzfoo"), Criteria(), now) == []
    adult = search(parse_query("nsfw art"), Criteria(), now)
    assert any(p.adult for p in adult) and not any(p.adult for p in search(parse_query("nsfw art"),
                                                                           Criteria(safe=True), now))
