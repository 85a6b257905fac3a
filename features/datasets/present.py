"""The dataset list's search results drawn: matched words marked."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape


def marked(match: dict[str, Any]) -> Markup:
    """A match's text with its highlighted spans in ``<mark>``, escaped."""
    text = match["text"]
    spans = match.get("highlights") or []
    out, at = [], 0
    for start, end in spans:
        out.append(escape(text[at:start]))
        out.append(Markup("<mark>") + escape(text[start:end]) + Markup("</mark>"))
        at = end
    out.append(escape(text[at:]))
    return Markup("").join(out)
