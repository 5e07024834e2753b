"""What the sample archives: HTML pages (their markup, encoding and declared charset) and image responses."""

from __future__ import annotations

import gzip
import hashlib
import html
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit


@dataclass
class ArchivedImageRecord:
    """An image response the sample archives (or, with ``archived`` False, only references)."""

    url: str
    body: bytes
    content_type: str
    photo: str
    width: int | None
    height: int | None
    case: str
    archived: bool = True
    decodable: bool = True

    def oracle(self) -> dict[str, Any]:
        """What expected.json says about this image URL."""
        return {
            "archived": self.archived,
            "content_type": self.content_type if self.archived else None,
            "decodable": self.decodable if self.archived else None,
            "width": self.width,
            "height": self.height,
            "bytes": len(self.body) if self.archived else None,
            "sha256": hashlib.sha256(self.body).hexdigest() if self.archived else None,
            "photo": self.photo,
            "case": self.case,
        }


@dataclass
class Page:
    """One archived HTML page: its blocks of body markup and how it is encoded and declared."""

    url: str
    lang: str | None
    title: str
    blocks: list[str] = field(default_factory=list)
    head: list[str] = field(default_factory=list)
    base_href: str | None = None
    encoding: str = "utf-8"
    meta_charset: str | None = "utf-8"
    header_charset: str | None = "utf-8"
    content_encoding: str | None = None
    raw_markup: str | None = None
    case: str = "ordinary"

    @property
    def base_url(self) -> str:
        """The URL relative references resolve against (``<base href>`` resolved against the page URL)."""
        return urljoin(self.url, self.base_href) if self.base_href else self.url

    def markup(self) -> str:
        """The page's HTML as text (before encoding)."""
        if self.raw_markup is not None:
            return self.raw_markup
        lang = f' lang="{self.lang}"' if self.lang else ""
        head = []
        if self.meta_charset:
            head.append(f'<meta charset="{self.meta_charset}">')
        head.append(f"<title>{html.escape(self.title)}</title>")
        if self.base_href:
            head.append(f'<base href="{self.base_href}">')
        head += self.head
        head.append('<link rel="stylesheet" href="/static/site.css">')
        host = urlsplit(self.url).hostname
        return "\n".join(
            [
                "<!DOCTYPE html>",
                f"<html{lang}>",
                "<head>",
                *head,
                "</head>",
                "<body>",
                f'<header><a href="/"><img src="/static/logo.png" alt="" width="120" height="40"></a> {host}</header>',
                "<main>",
                f"<h1>{html.escape(self.title)}</h1>",
                *self.blocks,
                "</main>",
                "<footer><p>(c) 2024 example site. All pictures are used with permission.</p></footer>",
                "</body>",
                "</html>",
                "",
            ]
        )

    def body(self) -> bytes:
        """The HTTP body as archived (encoded, and gzip-compressed when the page says so)."""
        payload = self.markup().encode(self.encoding)
        if self.content_encoding == "gzip":
            payload = gzip.compress(payload, compresslevel=6, mtime=0)
        return payload

    def content_type(self) -> str:
        """The HTTP Content-Type header."""
        return f"text/html; charset={self.header_charset}" if self.header_charset else "text/html"
