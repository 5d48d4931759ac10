"""Web search pieces: Google's query validation, the engines' request mapping and answers in Google's shape."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from yourouter.config import settings_from_mapping
from yourouter.providers.registry import build_provider
from yourouter.search.cache import MemoryCache, cache_key
from yourouter.search.engines import brave, engine, google, searxng
from yourouter.search.query import SearchError, parse_query
from yourouter.search.results import SearchItem, SearchResult, render_google


def _provider(kind: str, **extra: object) -> object:
    base = {"google-search": "https://customsearch.googleapis.com", "brave": "https://api.search.brave.com/res/v1",
            "searxng": "http://searx.local"}[kind]
    settings = settings_from_mapping({"providers": [{"name": f"s-{kind}", "vendor": kind, "type": kind,
                                                     "base_url": base, **extra}]}, env={})
    return build_provider(settings.providers[0])


@pytest.mark.parametrize(("params", "param"), [
    ({}, "q"), ({"q": " "}, "q"), ({"q": "x", "num": "11"}, "num"), ({"q": "x", "num": "0"}, "num"),
    ({"q": "x", "start": "-1"}, "start"), ({"q": "x", "start": "92", "num": "10"}, "start"),
    ({"q": "x", "num": "ten"}, "num"), ({"q": "x", "safe": "strict"}, "safe"),
    ({"q": "x", "dateRestrict": "d"}, "dateRestrict"), ({"q": "x", "searchType": "video"}, "searchType"),
    ({"q": "x", "colour": "red"}, "colour")])
def test_out_of_range_values_are_400s_never_clamped(params: dict[str, str], param: str) -> None:
    with pytest.raises(SearchError) as refused:
        parse_query(params)
    assert refused.value.status == 400 and refused.value.param == param


def test_a_valid_query_and_what_each_engine_receives() -> None:
    query = parse_query({"q": "rust async", "num": "5", "start": "6", "siteSearch": "docs.rs", "gl": "DE",
                         "lr": "lang_de", "dateRestrict": "w1", "exactTerms": "tokio", "key": "ignored",
                         "alt": "json", "fileType": "pdf"})
    assert query.params()["num"] == "5" and "key" not in query.params()
    assert query.operators() == 'rust async "tokio" site:docs.rs filetype:pdf'
    gcse = _provider("google-search", api_key="gk", cx="default-cx")
    url, _ = google.request(query, gcse)  # type: ignore[arg-type]
    sent = parse_qs(urlsplit(url).query)
    assert url.startswith("https://customsearch.googleapis.com/customsearch/v1?")
    assert sent["key"] == ["gk"] and sent["cx"] == ["default-cx"] and sent["start"] == ["6"]
    url, headers = brave.request(query, _provider("brave", api_key="bk"))  # type: ignore[arg-type]
    sent = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/res/v1/web/search" and headers["X-Subscription-Token"] == "bk"
    assert (sent["count"], sent["offset"], sent["freshness"]) == (["5"], ["1"], ["pw"])
    assert sent["country"] == ["de"] and sent["search_lang"] == ["de"] and "site:docs.rs" in sent["q"][0]
    url, _ = searxng.request(query, _provider("searxng"))  # type: ignore[arg-type]
    sent = parse_qs(urlsplit(url).query)
    assert sent["pageno"] == ["1"] and sent["format"] == ["json"] and sent["time_range"] == ["week"]
    assert engine("brave") is brave


@pytest.mark.parametrize(("start", "num", "expected"), [
    (1, 10, (10, 0, 0)), (11, 10, (10, 1, 0)), (6, 5, (5, 1, 0)), (5, 10, (14, 0, 4)), (15, 10, (12, 1, 2)),
    (91, 9, (10, 9, 0))])
def test_brave_pages_hold_googles_window(start: int, num: int, expected: tuple[int, int, int]) -> None:
    count, offset, skip = brave.page(start, num)
    assert (count, offset, skip) == expected
    assert offset <= 9 and count <= 20 and offset * count + skip == start - 1


def test_brave_and_searxng_answers_become_googles_shape() -> None:
    query = parse_query({"q": "gateway", "num": "2"})
    brave_body = orjson.dumps({"type": "search", "query": {"original": "gateway", "more_results_available": True},
                               "web": {"type": "search", "results": [
                                   {"title": "API <strong>gateway</strong>", "url": "https://www.example.com/gw",
                                    "description": "An API <strong>gateway</strong> &amp; more", "page_age": "2025-01"},
                                   {"title": "Two", "url": "https://two.example/", "description": "d"},
                                   {"title": "Three", "url": "https://three.example/", "description": "d"}]}})
    answer = brave.answer(brave_body, query)
    assert answer["kind"] == "customsearch#search" and len(answer["items"]) == 2
    first = answer["items"][0]
    assert first["title"] == "API gateway" and first["snippet"] == "An API gateway & more"
    assert first["htmlTitle"] == "API <b>gateway</b>" and first["displayLink"] == "example.com"
    assert answer["queries"]["nextPage"][0]["startIndex"] == 3 and "previousPage" not in answer["queries"]
    assert isinstance(answer["searchInformation"]["totalResults"], str)
    empty = searxng.answer(orjson.dumps({"query": "zz", "number_of_results": 0, "results": []}), query)
    assert "items" not in empty and empty["searchInformation"]["totalResults"] == "0"
    paged = searxng.answer(orjson.dumps({"query": "q", "number_of_results": 0, "results": [
        {"url": f"https://r{i}.example/", "title": f"r{i}", "content": "c"} for i in range(10)]}),
        parse_query({"q": "q", "start": "4", "num": "3"}))
    assert [item["title"] for item in paged["items"]] == ["r3", "r4", "r5"]
    assert paged["queries"]["previousPage"][0]["startIndex"] == 1


def test_render_offers_pages_up_to_the_hundredth_result() -> None:
    items = tuple(SearchItem(title=f"t{i}", link=f"https://e/{i}") for i in range(10))
    answer = render_google(SearchResult(items=items, total=5000), parse_query({"q": "x", "start": "81", "num": "10"}))
    assert answer["queries"]["nextPage"][0]["startIndex"] == 91  # results 91-100 may still be asked for
    last = render_google(SearchResult(items=items, total=5000), parse_query({"q": "x", "start": "91", "num": "10"}))
    assert "nextPage" not in last["queries"] and parse_query({"q": "x", "start": "0"}).start == 1


def test_memory_cache_expires_and_evicts() -> None:
    import asyncio

    async def run() -> None:
        cache = MemoryCache(ttl_s=60, max_entries=2)
        keys = [cache_key(None, {"q": str(i)}) for i in range(3)]
        for key in keys:
            await cache.put(key, b"{}", {"vendor": "v"})
        assert await cache.get(keys[0]) is None and await cache.get(keys[2]) == (b"{}", {"vendor": "v"})
        assert cache_key("brave", {"q": "0"}) != keys[0] and cache_key(None, {"q": "0"}) == keys[0]
        short = MemoryCache(ttl_s=0.01, max_entries=5)
        await short.put(keys[0], b"{}", {})
        await asyncio.sleep(0.02)
        assert await short.get(keys[0]) is None

    asyncio.run(run())
