"""SSE framing and the OpenAI stream usage tap (pure functions)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from yourouter.codecs import openai as codec
from yourouter.codecs.sse import SseSplitter, data_of, event

EVENTS = [b'data: {"a":1}\n\n', b"data: [DONE]\n\n", b'event: x\ndata: {"b":2}\n\n']


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20))
def test_splitter_reassembles_events_across_any_chunking(cuts: list[int]) -> None:
    stream = b"".join(EVENTS)
    splitter, out, position = SseSplitter(), [], 0
    for cut in cuts:
        out += splitter.feed(stream[position:position + cut])
        position += cut
    out += splitter.feed(stream[position:])
    assert out == EVENTS and splitter.close() == b""


def test_splitter_normalises_crlf_and_keeps_partial() -> None:
    splitter = SseSplitter()
    assert splitter.feed(b'data: {"a":1}\r\n\r\ndata: {"b"') == [b'data: {"a":1}\n\n']
    assert splitter.close() == b'data: {"b"'


def test_data_of() -> None:
    assert data_of(b'data: {"a":1}\n\n') == b'{"a":1}'
    assert data_of(b"event: ping\ndata: one\ndata: two\n\n") == b"one\ntwo"
    assert data_of(b": comment\n\n") is None
    assert event(b"x") == b"data: x\n\n"


def _chunk(**fields: object) -> bytes:
    return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", **fields},
                                  separators=(",", ":")).encode() + b"\n\n"


def test_tap_strips_usage_the_client_did_not_ask_for() -> None:
    tap = codec.stream_tap(strip_usage=True)
    content = tap.event(_chunk(choices=[{"index": 0, "delta": {"content": "hi"}}], usage=None))
    assert content is not None and b"usage" not in content and json.loads(content[6:])["choices"]
    usage_only = _chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 5,
                                           "prompt_tokens_details": {"cached_tokens": 2}})
    assert tap.event(usage_only) is None
    assert (tap.usage.prompt_tokens, tap.usage.completion_tokens, tap.usage.cached_tokens) == (3, 5, 2)


def test_tap_rewrites_usage_riding_on_a_content_chunk() -> None:
    tap = codec.stream_tap(strip_usage=True)
    out = tap.event(_chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}],
                           usage={"prompt_tokens": 1, "completion_tokens": 2}))
    assert out is not None and "usage" not in json.loads(out[6:]) and tap.usage.completion_tokens == 2


def test_tap_passes_everything_when_client_asked_for_usage() -> None:
    tap = codec.stream_tap(strip_usage=False)
    events = [_chunk(choices=[{"index": 0, "delta": {"content": "x"}}], usage=None),
              _chunk(choices=[], usage={"prompt_tokens": 1, "completion_tokens": 2})]
    assert [tap.event(e) for e in events] == events and tap.usage.completion_tokens == 2


def test_tap_ignores_usage_words_inside_content() -> None:
    tap = codec.stream_tap(strip_usage=True)
    raw = _chunk(choices=[{"index": 0, "delta": {"content": 'he said "usage":{"x":1}'}}])
    assert tap.event(raw) == raw and tap.usage is None


def test_upstream_body_injects_include_usage_only_when_needed() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"extra":{"k":1}}'
    request = codec.parse_chat(raw)
    body = json.loads(codec.upstream_chat_body(request, raw))
    assert body["stream_options"] == {"include_usage": True} and body["extra"] == {"k": 1}
    plain = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
    assert codec.upstream_chat_body(codec.parse_chat(plain), plain) is plain  # untouched bytes
    asked = b'{"model":"m","messages":[{"role":"user"}],"stream":true,"stream_options":{"include_usage":true}}'
    assert codec.upstream_chat_body(codec.parse_chat(asked), asked) is asked


def test_usage_of_response() -> None:
    body = b'{"usage":{"prompt_tokens":4,"completion_tokens":6}}'
    assert codec.usage_of_response(body).completion_tokens == 6
    assert codec.usage_of_response(b"not json") is None
    assert codec.usage_of_response(b"[]") is None
