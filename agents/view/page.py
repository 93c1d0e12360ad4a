"""The page: the HTML template with the data inlined, compressed and escaped.

The page data is JSON, gzip-compressed and base64-encoded into a `<script type="application/octet-stream">`
block, which the page decodes with the browser's `DecompressionStream`. Base64 has no `<`, so no
transcript text can close the script block; the small uncompressed header goes through
`script_json`, which escapes what could (`</script>`, `<!--`) and the line separators U+2028/U+2029.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import re
from importlib import resources
from typing import Any

MARKER = re.compile(r"@@(TITLE|META|DATA)@@")


def script_json(value: Any) -> str:
    """JSON that is safe inside a `<script>` block: no `<`, `>`, `&` or U+2028/U+2029 as themselves."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def finite(value: Any) -> Any:
    """`value` with NaN and infinities as None (JSON has no NaN; the browser's JSON.parse rejects it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def pack(data: Any) -> str:
    """The data as base64 of gzip-compressed JSON (deterministic: no timestamp in the gzip header)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    if "NaN" in text or "Infinity" in text:  # rare (a metric that diverged): pay for the walk only then
        text = json.dumps(finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in model output: JSON escapes keep it, as the transcript did
        raw = json.dumps(finite(data), ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def unpack(payload: str) -> Any:
    """The inverse of `pack` (what the page does in the browser)."""
    return json.loads(gzip.decompress(base64.b64decode(payload)).decode("utf-8"))


def render_page(data: dict[str, Any], title: str) -> str:
    """The whole HTML file for `data` (see agents.view.data.page_data)."""
    template = resources.files("agents.view").joinpath("template.html").read_text(encoding="utf-8")
    meta = {"title": title, "sources": [s["label"] for s in data.get("sources", [])], "dialogues": len(data.get("dialogues", []))}
    title_html = html.escape(title).replace("\u2028", "&#8232;").replace("\u2029", "&#8233;")
    parts = {"TITLE": title_html, "META": script_json(meta), "DATA": pack(data)}
    return MARKER.sub(lambda m: parts[m.group(1)], template)  # one pass: inserted text is never searched again


def inlined_payload(page: str) -> str:
    """The base64 payload of a written page (for tests and size reports)."""
    match = re.search(r'<script type="application/octet-stream" id="data">([A-Za-z0-9+/=]*)</script>', page)
    if match is None:
        raise ValueError("no inlined data block in this page")
    return match.group(1)
