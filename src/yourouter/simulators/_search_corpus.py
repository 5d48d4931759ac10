"""Deterministic fake web pages for the search simulators (Google Custom Search, Brave, SearXNG).

One corpus per query: the pages are generated from the query's words alone (a `random.Random` seeded by them), so
the three simulators return the SAME pages in the SAME order for the same query, each in its own API's shape, and
paging is stable across calls. Operators and API filters only remove pages: a filtered result is an in-order
subset of the unfiltered one. Pure functions, no I/O; the caller passes `now` (page dates are ages in hours).

Every page's title and snippet contain every query word; most contain the query text verbatim, a quarter of the
pages of a multi-word query contain the words in another order (so a quoted phrase narrows the result). Every
corpus has pages on a fixed pool of hosts (`en.wikipedia.org`, `github.com`, `stackoverflow.com`, `www.reddit.com`,
`medium.com`, `www.youtube.com`, `news.ycombinator.com`, `arxiv.org`, `www.example.com`, `blog.example.net`,
`www.nytimes.com`, `papers.example.org`) and on two hosts named after the first word (`www.<word>.org`,
`docs.<word>.dev`); PDFs live on `arxiv.org/pdf/...` and `papers.example.org`. Each page has one image.

Query syntax (`parse_query`): words, `"exact phrase"`, `-word`, `-"phrase"`, `NOT word`, `+word`, `site:host[/path]`,
`-site:host`, `filetype:pdf` / `ext:pdf`, `intitle:word`; `OR`/`AND` and `lang:`/`loc:` are accepted and ignored.
Directives (removed from the text): `[sim:empty]` (no results), `[sim:results=N]` (exactly N pages before filters,
default 40-120 from the query's hash), `[sim:unresponsive]` (SearXNG: every engine failed). A word containing
`zzzz` (e.g. `zzzznoresults`) also yields no results. Words like `nsfw` or `adult` make every third page adult
content, which safe-search settings remove.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["Criteria", "Image", "Page", "ParsedQuery", "build_corpus", "highlight", "parse_query", "search",
           "size_class"]

MAX_RESULTS = 1000
NO_RESULTS_MARK = "zzzz"
ADULT_WORDS = frozenset({"nsfw", "adult", "porn", "xxx", "explicit"})
WEB_ENGINES = ("google", "duckduckgo", "brave", "bing", "startpage", "qwant", "mojeek")
IMAGE_ENGINES = ("bing images", "google images", "duckduckgo images", "qwant images")

_DIRECTIVE = re.compile(r"\[sim:([a-z_]+)(?:=([^\]]*))?\]")
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_SLUG_WORD = re.compile(r"[^a-z0-9]+")
_SNIPPETS = {
    "tutorial": "Learn {q} step by step in this tutorial, with practical examples for beginners and advanced users.",
    "guide": "A complete guide to {q}: how it works, common pitfalls and best practices explained.",
    "news": "The latest {q} news and updates, with analysis and commentary from our editors.",
    "review": "An in-depth review of {q}, comparing the main options and their trade-offs.",
    "docs": "Documentation and reference for {q}, including installation, configuration and an API overview.",
    "forum": "Community discussion about {q}: questions, answers and experiences shared by users.",
    "research": "Research on {q}: a survey of recent results, open problems and future directions.",
    "video": "Watch this video about {q} to understand the key ideas in a few minutes.",
    "encyclopedia": "{Q} is a subject with a long history; this encyclopedia article covers its origins, "
                    "concepts and applications.",
}
_SIZES = ((48, 48), (128, 128), (320, 240), (640, 480), (800, 600), (1024, 768), (1280, 720), (1600, 900),
          (1920, 1080), (2560, 1440), (3840, 2160), (4000, 3000))
_SIZE_CLASSES = (("icon", 128), ("small", 400), ("medium", 1024), ("large", 1600), ("xlarge", 2400),
                 ("xxlarge", 3200), ("huge", 1 << 30))
_IMAGE_TYPES = ("photo", "clipart", "lineart", "face", "stock")
_DOMINANT = ("black", "blue", "brown", "gray", "green", "orange", "pink", "purple", "red", "teal", "white", "yellow")
_AUTHORS = ("Jane Doe", "Alex Kim", "Sam Rivera", "Priya Shah", "Lee Wong", "Maria Costa")
_SUBS = ("programming", "technology", "science", "learnprogramming", "explainlikeimfive", "AskReddit")


@dataclass(frozen=True)
class _Kind:
    host: str
    site: str
    titles: tuple[str, ...]
    path: str
    snippets: tuple[str, ...] = ("tutorial", "guide", "review")
    unique: bool = False
    file_type: str = "html"


_KINDS = (
    _Kind("en.wikipedia.org", "Wikipedia", ("{Q} - Wikipedia",), "/wiki/{Slug}", ("encyclopedia",), unique=True),
    _Kind("github.com", "GitHub", ("GitHub - {owner}/{slug}: {Q} toolkit and examples",), "/{owner}/{slug}-{n}",
          ("docs", "tutorial")),
    _Kind("stackoverflow.com", "Stack Overflow", ("How do I get started with {q}? - Stack Overflow",
                                                  "What is the best way to use {q}? - Stack Overflow"),
          "/questions/{num}/{slug}", ("forum",)),
    _Kind("www.reddit.com", "Reddit", ("{Q}: what are your thoughts? : r/{sub}",), "/r/{sub}/comments/{id}/{slug}/",
          ("forum",)),
    _Kind("medium.com", "Medium", ("A Complete Guide to {Q} | by {author} | Medium",), "/@{author_slug}/{slug}-{hex}",
          ("guide", "tutorial")),
    _Kind("www.youtube.com", "YouTube",
          ("{Q} Explained in 10 Minutes - YouTube", "{Q} tutorial for beginners - YouTube"), "/watch?v={id}",
          ("video",)),
    _Kind("news.ycombinator.com", "Hacker News", ("Show HN: {Q} in practice | Hacker News",), "/item?id={num}",
          ("forum", "news")),
    _Kind("arxiv.org", "arXiv", ("[{arxiv}] A survey of {q} research",), "/abs/{arxiv}", ("research",)),
    _Kind("www.{w}.org", "{W}", ("{Q} — Official Site", "Download {Q} | {W}"), "/{section}/{n}/", ("docs", "guide")),
    _Kind("docs.{w}.dev", "{W} Docs", ("{Q} documentation", "{Q} reference guide"), "/en/latest/{slug}-{n}.html",
          ("docs",)),
    _Kind("www.example.com", "Example", ("{Q}: everything you need to know", "The best {q} tips, tricks and examples"),
          "/articles/{slug}-{n}", ("guide", "tutorial", "review")),
    _Kind("blog.example.net", "Example Blog", ("Why {q} matters", "{Q} news and updates"), "/posts/{slug}-{n}/",
          ("news", "review")),
    _Kind("www.nytimes.com", "The New York Times", ("{Q} Is Changing Fast. Here’s What to Know.",),
          "/article/{slug}-{n}.html", ("news",)),
    _Kind("papers.example.org", "Example Papers", ("{Q}: a technical report",), "/files/{slug}-{n}.pdf",
          ("research",), file_type="pdf"),
)


@dataclass(frozen=True)
class Image:
    """The page's one image: what image search returns for it."""

    url: str
    width: int
    height: int
    byte_size: int
    extension: str  # jpg, png, gif, webp
    kind: str  # Google's imgType: photo, clipart, lineart, face, stock, animated
    color_type: str  # color, gray, mono, trans
    dominant: str

    @property
    def mime(self) -> str:
        return "image/jpeg" if self.extension == "jpg" else f"image/{self.extension}"

    def thumbnail(self, longest: int) -> tuple[int, int]:
        """(width, height) scaled so the longer side is at most `longest`."""
        scale = min(1.0, longest / max(self.width, self.height))
        return max(1, round(self.width * scale)), max(1, round(self.height * scale))


@dataclass(frozen=True)
class Page:
    """One fake web page. `rank` is its 1-based position in the unfiltered corpus."""

    rank: int
    url: str
    scheme: str
    host: str
    path: str  # with the query string, if any
    site: str
    title: str
    snippet: str
    extra_snippets: tuple[str, ...]
    age_hours: int
    file_type: str  # html or pdf
    adult: bool
    has_thumbnail: bool
    engines: tuple[str, ...]  # SearXNG engines that "found" it
    image_engines: tuple[str, ...]
    image: Image
    text: str = field(repr=False)  # lowercased title + snippet, for matching

    def published(self, now: datetime) -> datetime:
        """When the page was published: `age_hours` before `now` rounded down to the hour (stable within an hour)."""
        return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None) - timedelta(
            hours=self.age_hours)


@dataclass(frozen=True)
class ParsedQuery:
    """A query with its operators and simulator directives taken apart."""

    words: tuple[str, ...]  # positive words as typed, each once (operators, directives and negations removed)
    phrases: tuple[str, ...] = ()  # quoted phrases, lowercased
    excluded: tuple[str, ...] = ()  # words and phrases that must not appear, lowercased
    sites: tuple[str, ...] = ()
    excluded_sites: tuple[str, ...] = ()
    file_types: tuple[str, ...] = ()
    in_title: tuple[str, ...] = ()
    operators: bool = False  # whether any operator was applied
    empty: bool = False
    size: int | None = None
    unresponsive: bool = False

    @property
    def text(self) -> str:
        """The query without operators and directives, as typed."""
        return " ".join(self.words)

    @property
    def key(self) -> str:
        """What the corpus is generated from: the lowercased words."""
        return " ".join(word.lower() for word in self.words)

    @property
    def highlight_terms(self) -> tuple[str, ...]:
        terms = {word.lower().strip(string.punctuation) for word in self.words}
        return tuple(sorted((t for t in terms if t), key=len, reverse=True))


@dataclass(frozen=True)
class Criteria:
    """Filters that are not query operators: dates, safe search, `orTerms`, image properties."""

    max_age_hours: int | None = None
    since: datetime | None = None  # naive UTC, like `Page.published`
    until: datetime | None = None
    safe: bool = False
    any_of: tuple[str, ...] = ()
    sort_by_date: bool = False
    oldest_first: bool = False
    images: bool = False  # file types then match the image's extension
    img_size: str | None = None
    img_type: str | None = None
    img_color_type: str | None = None
    img_dominant: str | None = None


def parse_query(raw: str, operators: bool = True) -> ParsedQuery:
    """Split `raw` into words, operators and `[sim:...]` directives (see the module docstring)."""
    empty = unresponsive = False
    size: int | None = None
    for name, value in _DIRECTIVE.findall(raw):
        if name == "empty":
            empty = True
        elif name == "unresponsive":
            unresponsive = True
        elif name == "results" and value.isdigit():
            size = min(int(value), MAX_RESULTS)
    text = _DIRECTIVE.sub(" ", raw)
    words: list[str] = []
    found: dict[str, list[str]] = {"phrases": [], "excluded": [], "sites": [], "excluded_sites": [],
                                   "file_types": [], "in_title": []}
    applied = False
    negate_next = False
    for match in _TOKEN.finditer(text):
        minus, phrase, token = match.group(1), match.group(2), match.group(3)
        if phrase is not None:
            if not operators:
                words.extend(phrase.split())
                continue
            applied = True
            if minus or negate_next:
                found["excluded"].append(" ".join(phrase.lower().split()))
            elif phrase.split():
                words.extend(phrase.split())
                found["phrases"].append(" ".join(phrase.lower().split()))
            negate_next = False
            continue
        if not operators:
            words.append(token)
            continue
        if token in ("OR", "AND", "|"):
            applied = True
            continue
        if token == "NOT":
            applied = negate_next = True
            continue
        negative = negate_next or (token.startswith("-") and len(token) > 1)
        negate_next = False
        body = token[1:] if token.startswith("-") and len(token) > 1 else token
        name, colon, value = body.partition(":")
        name = name.lower()
        if colon and value and name in ("site", "filetype", "ext", "intitle", "lang", "loc"):
            applied = True
            if name == "site":
                found["excluded_sites" if negative else "sites"].append(value.lower())
            elif name in ("filetype", "ext") and not negative:
                found["file_types"].append(value.lower().lstrip("."))
            elif name == "intitle" and not negative:
                words.append(value)
                found["in_title"].append(value.lower())
            continue
        if negative:
            applied = True
            found["excluded"].append(body.lower())
        elif token.startswith("+") and len(token) > 1:
            applied = True
            words.append(token[1:])
        else:
            words.append(token)
    if any(NO_RESULTS_MARK in word.lower() for word in words):
        empty = True
    # A word said twice (`q` and the same `exactTerms`, say) is one word: the corpus depends on the set in order.
    unique = tuple({word.lower(): word for word in reversed(words)}.values())[::-1]
    return ParsedQuery(words=unique, phrases=tuple(found["phrases"]), excluded=tuple(found["excluded"]),
                       sites=tuple(found["sites"]), excluded_sites=tuple(found["excluded_sites"]),
                       file_types=tuple(found["file_types"]), in_title=tuple(found["in_title"]), operators=applied,
                       empty=empty, size=size, unresponsive=unresponsive)


def search(query: ParsedQuery, criteria: Criteria, now: datetime) -> list[Page]:
    """Every page of the query's corpus that passes its operators and `criteria`, in corpus order (or by date)."""
    if query.empty or not query.words:
        return []
    pages = [page for page in build_corpus(query.key, query.text, query.size) if _matches(page, query, criteria, now)]
    if criteria.sort_by_date:
        pages.sort(key=lambda page: page.age_hours, reverse=criteria.oldest_first)
    return pages


def size_class(width: int, height: int) -> str:
    """Google's `imgSize` class of an image: icon, small, medium, large, xlarge, xxlarge or huge."""
    longest = max(width, height)
    return next(name for name, limit in _SIZE_CLASSES if longest <= limit)


def highlight(text: str, terms: tuple[str, ...], tag: str) -> str:
    """HTML-escape `text` and wrap each occurrence of a term (case-insensitive, whole words) in `<tag>`."""
    escaped = html.escape(text, quote=False)
    patterns = [_term_pattern(html.escape(term, quote=False)) for term in terms if term]
    if not patterns:
        return escaped
    combined = re.compile("|".join(patterns), re.IGNORECASE)
    return combined.sub(lambda match: f"<{tag}>{match.group(0)}</{tag}>", escaped)


def build_corpus(key: str, display: str, size: int | None = None) -> list[Page]:
    """The query's pages, generated from `key` (the lowercased words) alone; `display` is the text as typed."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    count = size if size is not None else 40 + seed % 81
    words = display.split()
    slug = _slug(key) or f"topic-{seed % 65536:04x}"
    word = _slug(words[0].lower()) if words else ""
    host_word = word or "topic"
    adult = any(w.lower() in ADULT_WORDS for w in words)
    order = list(range(len(_KINDS)))
    pages: list[Page] = []
    cycle = 0
    while len(pages) < count:
        rng.shuffle(order)
        for index in order:
            kind = _KINDS[index]
            if len(pages) >= count:
                break
            if kind.unique and cycle:
                continue
            pages.append(_page(rng, kind, len(pages) + 1, count, display, slug, host_word, adult))
        cycle += 1
    return pages


# Generation ------------------------------------------------------------------------------------------------------

def _page(rng: random.Random, kind: _Kind, rank: int, count: int, display: str, slug: str, host_word: str,
          adult: bool) -> Page:
    words = display.split()
    scattered = len(words) > 1 and rng.random() < 0.25
    text = ", ".join(reversed(words)) if scattered else display
    number = rng.randrange(10_000_000, 80_000_000)
    values = {
        "q": text, "Q": text[:1].upper() + text[1:], "slug": slug, "Slug": "_".join(w.capitalize() for w in
                                                                               slug.split("-")),
        "w": host_word, "W": host_word.capitalize(), "n": str(rank), "num": str(number),
        "hex": f"{rng.getrandbits(48):012x}", "id": _token(rng, 11), "owner": f"{host_word}-labs",
        "author": rng.choice(_AUTHORS), "sub": rng.choice(_SUBS), "section": rng.choice(("about", "learn", "docs")),
        "arxiv": f"{rng.randrange(15, 26)}{rng.randrange(1, 13):02d}.{rng.randrange(10000, 99999)}",
    }
    values["author_slug"] = values["author"].lower().replace(" ", "")
    pdf = kind.file_type == "pdf" or (kind.host == "arxiv.org" and rng.random() < 0.4)
    host = kind.host.format(**values)
    path = ("/pdf/{arxiv}" if pdf and kind.host == "arxiv.org" else kind.path).format(**values)
    title = rng.choice(kind.titles).format(**values)
    if pdf and kind.host == "arxiv.org":
        title = title.split("] ", 1)[-1]
    snippet = _SNIPPETS[rng.choice(kind.snippets)].format(**values)
    extras = tuple(template.format(**values) for template in rng.sample(list(_SNIPPETS.values()), 3))
    is_adult = adult and rank % 3 == 0
    image = _image(rng, host, slug, rank, is_adult)
    engines_count = 3 if rank <= max(1, count // 5) else 2 if rank <= count // 2 else 1
    engines = tuple(rng.sample(WEB_ENGINES, engines_count))
    if kind.host == "en.wikipedia.org":
        engines = ("wikipedia", *engines[:-1]) if len(engines) > 1 else ("wikipedia",)
    return Page(rank=rank, url=f"https://{host}{path}", scheme="https", host=host, path=path,
                site=kind.site.format(**values), title=title, snippet=snippet, extra_snippets=extras,
                age_hours=_age_hours(rng), file_type="pdf" if pdf else "html", adult=is_adult,
                has_thumbnail=not pdf and rng.random() < 0.6, engines=engines,
                image_engines=tuple(rng.sample(IMAGE_ENGINES, min(engines_count, 2))), image=image,
                text=f"{title}\n{snippet}".lower())


def _image(rng: random.Random, host: str, slug: str, rank: int, adult: bool) -> Image:
    width, height = rng.choice(_SIZES)
    roll = rng.random()
    extension = "jpg" if roll < 0.6 else "png" if roll < 0.85 else "gif" if roll < 0.95 else "webp"
    kind = "animated" if extension == "gif" else rng.choice(_IMAGE_TYPES)
    color_roll = rng.random()
    color_type = ("trans" if extension == "png" and color_roll < 0.3 else "gray" if color_roll < 0.4
                  else "mono" if color_roll < 0.45 else "color")
    per_pixel = {"jpg": 0.35, "png": 1.1, "gif": 0.6, "webp": 0.25}[extension]
    return Image(url=f"https://{host}/images/{slug}-{rank}{'-nsfw' if adult else ''}.{extension}", width=width,
                 height=height, byte_size=int(width * height * per_pixel) + rng.randrange(1000, 9000),
                 extension=extension, kind=kind, color_type=color_type, dominant=rng.choice(_DOMINANT))


def _age_hours(rng: random.Random) -> int:
    """Ages spread so that every date filter keeps something: ~5% under a day, ~10% under a week, and so on."""
    roll = rng.random()
    bounds = ((0.05, 1, 23), (0.15, 24, 24 * 7 - 1), (0.3, 24 * 7, 24 * 30), (0.6, 24 * 31, 24 * 364))
    for limit, low, high in bounds:
        if roll < limit:
            return rng.randint(low, high)
    return rng.randint(24 * 366, 24 * 365 * 8)


def _slug(text: str) -> str:
    return _SLUG_WORD.sub("-", text.lower()).strip("-")


def _token(rng: random.Random, length: int) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(rng.choice(alphabet) for _ in range(length))


# Matching --------------------------------------------------------------------------------------------------------

def _term_pattern(term: str) -> str:
    escaped = re.escape(term)
    start = r"(?<!\w)" if term[:1].isalnum() else ""
    end = r"(?!\w)" if term[-1:].isalnum() else ""
    return f"{start}{escaped}{end}"


def _contains(text: str, term: str) -> bool:
    return bool(term) and re.search(_term_pattern(term), text) is not None


def _site_matches(page: Page, spec: str) -> bool:
    spec = spec.removeprefix("https://").removeprefix("http://").rstrip("/")
    host, _, path = spec.partition("/")
    if not (page.host == host or page.host.endswith("." + host)):
        return False
    return not path or page.path.lstrip("/").startswith(path)


def _matches(page: Page, query: ParsedQuery, criteria: Criteria, now: datetime) -> bool:
    text = page.text
    if not all(phrase in text for phrase in query.phrases):
        return False
    if any(_contains(text, term) for term in query.excluded):
        return False
    if not all(_contains(page.title.lower(), term) for term in query.in_title):
        return False
    if query.sites and not any(_site_matches(page, site) for site in query.sites):
        return False
    if any(_site_matches(page, site) for site in query.excluded_sites):
        return False
    if query.file_types:
        kind = page.image.extension if criteria.images else page.file_type
        aliases = {"jpeg": "jpg", "htm": "html"}
        if kind not in {aliases.get(t, t) for t in query.file_types}:
            return False
    if criteria.any_of and not any(_contains(text, term.lower()) for term in criteria.any_of):
        return False
    if criteria.max_age_hours is not None and page.age_hours > criteria.max_age_hours:
        return False
    published = page.published(now)
    if (criteria.since is not None and published < criteria.since) or (
            criteria.until is not None and published > criteria.until):
        return False
    if criteria.safe and page.adult:
        return False
    return not criteria.images or _image_matches(page.image, criteria)


def _image_matches(image: Image, criteria: Criteria) -> bool:
    return ((criteria.img_size is None or size_class(image.width, image.height) == criteria.img_size)
            and (criteria.img_type is None or image.kind == criteria.img_type)
            and (criteria.img_color_type is None or image.color_type == criteria.img_color_type)
            and (criteria.img_dominant is None or image.dominant == criteria.img_dominant))
