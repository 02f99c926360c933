"""JSON read from the outside (request bodies, uploaded files, JSON typed into a form) with a bounded
nesting depth, and API bodies that must be objects.

Python's json module recurses once per level: a 2 KB body of 1,000 nested brackets raised
RecursionError (a 500) before any view saw it, and code walking a parsed value recurses again. The
depth is therefore measured on the raw text, before parsing, in C-speed passes (a 50 MB upload
takes well under a second)."""

import io
import json
import re
from typing import Any

import numpy as np
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# A JSON string literal (escapes included): brackets inside strings do not nest.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Every byte except the four brackets, to delete.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JSONTooDeep(json.JSONDecodeError):
    """The JSON text nests deeper than settings.JSON_MAX_DEPTH. A JSONDecodeError, so every importer
    that already reports bad JSON by its `msg` reports this too."""

    def __init__(self, depth_limit: int, text: str | bytes = ""):
        self.depth_limit = depth_limit
        doc = text if isinstance(text, str) else ""  # JSONDecodeError counts lines in str documents only
        super().__init__(f"nested more than {depth_limit} levels deep (the JSON_MAX_DEPTH setting)", doc, 0)


def _bracket_depth(raw: bytes) -> int:
    """The deepest nesting of the brackets in `raw`, wherever they stand."""
    brackets = raw.translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (or in any line of JSON Lines)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    return _bracket_depth(_STRING.sub(b"", raw))


def check_json_depth(text: str | bytes, depth_limit: int | None = None) -> None:
    """Raise JSONTooDeep when the text nests deeper than the limit (default settings.JSON_MAX_DEPTH)."""
    limit = settings.JSON_MAX_DEPTH if depth_limit is None else depth_limit
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if raw.count(b"[") + raw.count(b"{") <= limit:  # fewer openings than the limit: nothing to measure
        return
    # Brackets inside strings only add depth, so counting them all is a quick upper bound; the exact
    # count (strings removed, the slower pass) is needed only when that bound is over the limit.
    if _bracket_depth(raw) > limit and json_depth(raw) > limit:
        raise JSONTooDeep(limit, text)


def json_loads(text: str | bytes, **kwargs) -> Any:
    """json.loads for text from outside: JSONTooDeep (a JSONDecodeError) past settings.JSON_MAX_DEPTH."""
    check_json_depth(text)
    return json.loads(text, **kwargs)


class JSONObjectParser(JSONParser):
    """DRF's JSON parser with a nesting limit, for bodies that are one JSON object: every endpoint of
    this API takes an object, so an array, a string or null is a 400 here instead of an
    AttributeError in the view."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            check_json_depth(raw)
        except JSONTooDeep as exc:
            raise ParseError(f"JSON parse error - {exc.msg}; flatten it.") from None
        data = super().parse(io.BytesIO(raw), media_type, parser_context)
        if not isinstance(data, dict):
            raise ParseError(f"Expected a JSON object ({{...}}) as the body, not {_json_type(data)}.")
        return data


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
