"""Readmes are Markdown rendered, then sanitised (nh3): nothing in them can
run script, load a frame, style the page or post a form."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from features.datasets.catalog import render_readme

XSS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<img src=x onerror="alert(1)">',
    "<img src=x onerror=alert(1)//",
    "<svg/onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<iframe src="javascript:alert(1)"></iframe>',
    "<body onload=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<style>body{display:none}</style>",
    '<form action="https://evil.example"><input name=p></form>',
    '<object data="x.swf"></object><embed src="x.swf">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '"><img src=x onerror=alert(1)>',
    "<details open ontoggle=alert(1)>",
    "<a href='vbscript:msgbox(1)'>x</a>",
    '<base href="https://evil.example/">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "```html\n<script>alert(1)</script>\n```",
]
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "strong", "table", "tbody",
    "td", "th", "thead", "tr", "ul",
}  # fmt: skip


class Elements(HTMLParser):
    """Every element and attribute of the HTML, as a browser would parse it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("payload", XSS)
def test_nothing_that_runs_survives(payload: str) -> None:
    parser = Elements()
    parser.feed(render_readme(payload))
    for tag, attrs in parser.found:
        assert tag in ALLOWED_TAGS, (tag, payload)
        for name, value in attrs.items():
            assert not name.startswith("on") and name != "style", (tag, name, payload)
            if name in ("href", "src"):
                assert re.match(r"^(https?:|mailto:|[^:]*$)", value or "", re.I), (value, payload)


def test_markdown_renders_with_safe_links() -> None:
    html = render_readme(
        "# Sales\n\nOrders of **2024**, see [the docs](https://example.com/docs).\n\n"
        "| column | meaning |\n| --- | --- |\n| `cust_id` | the customer |\n"
    )
    assert "<h1>Sales</h1>" in html and "<strong>2024</strong>" in html
    assert '<a href="https://example.com/docs" rel="nofollow noopener noreferrer">' in html
    assert "<table>" in html and "<code>cust_id</code>" in html
    # raw HTML is shown as text, not interpreted
    assert "&lt;b&gt;" in render_readme("<b>bold?</b>")
