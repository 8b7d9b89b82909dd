"""Model-card Markdown as HTML that is safe to embed, rendered once per README content at commit time.

Rendering untrusted Markdown is the expensive part of a card: markdown-it spends tens of microseconds per
byte on some inputs (a run of `[` or `![` opens a link label at every character). A card is therefore
rendered only within a budget (`RENDER_LIMIT` bytes, `BRACKET_LIMIT` brackets); past it, the card is kept as
escaped plain text, which costs one pass over the bytes.
"""

from __future__ import annotations

import html
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import nh3
from markdown_it import MarkdownIt

RENDER_LIMIT = 128 * 1024
BRACKET_LIMIT = 2048
# Relative links of a stored rendering point under this path; `place_in_repo` puts the repo's path there, so
# one rendering serves every repo that holds the same README. A card that writes this prefix itself only
# links into its own repo, which it could do anyway.
REPO_MARKER = "/-/card-repo"

# Tags and attributes a rendered card may keep. Markdown never needs more; everything else (raw HTML is
# already off in the parser) is dropped by the sanitiser as a second, independent line of defence.
CARD_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img", "li",
    "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
CARD_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}}
CARD_URL_SCHEMES = {"http", "https", "mailto"}

_markdown = MarkdownIt("js-default", {"html": False, "linkify": False})


@dataclass(frozen=True)
class Rendering:
    html: str
    # True when the card was over the rendering budget and is shown as escaped text.
    plain: bool
    note: str | None


def _quote_path(path: str) -> str:
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def _link_filter(repo_path: str, revision: str) -> Callable[[str, str, str], str | None]:
    """Relative links in a card point at files of the repo, as on the Hub; remote images are dropped
    because the pages load nothing from elsewhere."""

    def rewrite(tag: str, attribute: str, value: str) -> str | None:
        if attribute not in ("href", "src"):
            return value
        parts = urlsplit(value)
        if parts.scheme or parts.netloc:
            return None if tag == "img" else value
        if value.startswith(("/", "#")) or not parts.path:
            return value
        path = posixpath.normpath(parts.path)
        if path.startswith(".."):
            return None
        verb = "resolve" if tag == "img" else "blob"
        return f"{repo_path}/{verb}/{quote(revision, safe='')}/{_quote_path(path)}"

    return rewrite


def render_markdown(text: str, repo_path: str, revision: str) -> str:
    """Untrusted Markdown as HTML that is safe to embed: raw HTML is off in the parser and the result is
    sanitised with an allow-list (no script, no event handlers, no `javascript:` URLs). No size check: callers
    go through `render_card`.

    Example:
        >>> render_markdown("[x](javascript:alert(1))<script>1</script>", "/a/b", "main")
        '<p>[x](javascript:alert(1))&lt;script&gt;1&lt;/script&gt;</p>\\n'
    """
    cleaner = nh3.Cleaner(
        tags=CARD_TAGS,
        attributes=CARD_ATTRIBUTES,
        url_schemes=CARD_URL_SCHEMES,
        attribute_filter=_link_filter(repo_path, revision),
        link_rel="noopener noreferrer nofollow",
    )
    return str(cleaner.clean(_markdown.render(text)))


def over_budget(body: str) -> str | None:
    """Why a card body is not rendered as Markdown, or None when it is within the budget."""
    if len(body.encode()) > RENDER_LIMIT:
        return f"the card is over {RENDER_LIMIT // 1024} KiB and is shown as plain text"
    if body.count("[") > BRACKET_LIMIT:
        return f"the card has over {BRACKET_LIMIT} '[' characters and is shown as plain text"
    return None


def render_card(body: str) -> Rendering:
    """The stored rendering of a card body: Markdown within the budget, escaped text past it. Links to the
    repo's files use `REPO_MARKER` in place of the repo's path, and the default branch."""
    note = over_budget(body)
    if note is not None:
        return Rendering(html=f"<pre>{html.escape(body)}</pre>", plain=True, note=note)
    return Rendering(html=render_markdown(body, REPO_MARKER, "main"), plain=False, note=None)


def place_in_repo(rendered: str, repo_path: str) -> str:
    """A stored rendering with its file links pointing into the repo at `repo_path` (`/namespace/name`)."""
    return rendered.replace(f'="{REPO_MARKER}/', f'="{repo_path}/')
