"""Small pieces the translated engines share: markup-free text, languages, and a page of results."""

from __future__ import annotations

import html
import mimetypes
import re

_TAGS = re.compile(r"<[^>]+>")


def plain(text: object) -> str:
    """Engine snippets carry markup (`<strong>`) and entities; Google's plain fields have neither."""
    return html.unescape(_TAGS.sub("", str(text or ""))).strip()


def language(lr: str | None, hl: str | None) -> str | None:
    """Google's `lr=lang_en` (or `hl=en`) as a bare language code."""
    if lr and lr.startswith("lang_"):
        return lr[5:].split("|")[0]
    return hl or None


def mime_of(url: str) -> str | None:
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    return guessed


def window(start: int, num: int, page_size: int) -> tuple[int, int, int]:
    """Google's `start`/`num` on an engine that pages in fixed steps: (page index from 0, results to ask for,
    results to skip at the front of that page). Exact when `start - 1` is a multiple of the page size; otherwise
    the first page is asked for as far as the engine allows."""
    skip = start - 1
    if skip % page_size == 0:
        return skip // page_size, page_size, 0
    return skip // page_size, page_size, skip % page_size
