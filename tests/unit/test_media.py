"""The SSRF guard and limits of image fetching (real sockets, in-process server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from yourouter.config.schema import MediaConfig
from yourouter.ir.chat import ChatRequest, Image, Message, Text
from yourouter.ir.errors import GatewayError
from yourouter.pipeline.media import InlineImages, check_address
from yourouter.simulators.background import serve_in_thread

BIG = b"\x89PNG" + b"0" * 5000


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    async def app(scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        body = BIG if scope["path"] == "/big.png" else b"\x89PNG-small"
        kind = b"text/html" if scope["path"] == "/page" else b"image/png"
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    with serve_in_thread(app) as url:
        yield url


def _fetch(config: MediaConfig, url: str) -> Image:
    async def run() -> Image:
        images = InlineImages(config)
        try:
            return await images.fetch(url)
        finally:
            await images.close()

    return asyncio.run(run())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_loopback_is_refused_by_default(server: str, host: str) -> None:
    port = server.rsplit(":", 1)[1]
    with pytest.raises(GatewayError) as caught:
        _fetch(MediaConfig(fetch_timeout_s=2), f"http://{host}:{port}/small.png")  # a live server, refused anyway
    assert caught.value.status == 400 and caught.value.code == "image_url_forbidden"


@pytest.mark.parametrize("address", ["10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                                     "fd00::1", "fe80::1", "224.0.0.1", "0.0.0.0"])
def test_private_and_reserved_addresses_are_refused(address: str) -> None:
    # Checked without connecting anywhere: the guard refuses before a socket is opened.
    with pytest.raises(GatewayError) as caught:
        check_address("h", address)
    assert caught.value.code == "image_url_forbidden"
    check_address("example", "93.184.216.34")  # a public address passes


def test_allowed_when_configured_with_caps(server: str) -> None:
    config = MediaConfig(allow_private_networks=True, max_image_bytes=1000)
    image = _fetch(config, server + "/small.png")
    assert image.media_type == "image/png" and image.data
    with pytest.raises(GatewayError, match="larger than 1000 bytes"):
        _fetch(config, server + "/big.png")
    with pytest.raises(GatewayError, match="is not an image"):
        _fetch(config, server + "/page")
    with pytest.raises(GatewayError, match="not http"):
        _fetch(config, "file:///etc/passwd")


def test_inline_replaces_only_what_the_codec_needs(server: str) -> None:
    request = ChatRequest(model="m", messages=(Message("user", (
        Text("x"), Image(url=server + "/small.png", detail="low"), Image(url="gs://bucket/a.png"))),))

    async def run() -> ChatRequest:
        images = InlineImages(MediaConfig(allow_private_networks=True))
        try:
            return await images.inline(request, lambda image: bool(image.url and image.url.startswith("http")))
        finally:
            await images.close()

    parts = asyncio.run(run()).messages[0].parts
    assert parts[0] == Text("x") and isinstance(parts[1], Image) and parts[1].data and parts[1].detail == "low"
    assert parts[2] == Image(url="gs://bucket/a.png")
