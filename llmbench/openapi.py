"""OpenAPI pieces the apps' API views share: how a file download is documented.

A download answers with the media type of the format asked for, so its 200 response lists one media type per
format (clients and Schemathesis check the Content-Type against them), not application/octet-stream.
"""

from collections.abc import Iterable

from drf_spectacular.types import OpenApiTypes

from llmbench.exports import CONTENT_TYPES

# The media type each export format is sent with (parameters such as charset are not part of the schema).
EXPORT_MEDIA_TYPES = {
    **{kind: content_type.split(";")[0] for kind, content_type in CONTENT_TYPES.items()},
    "pdf": "application/pdf",  # llmbench.reports.pdf_response
    "jsonl": "application/jsonl",  # test cases, one JSON object a line
}
# JSON exports are one object ({"meta", "summary", "tables"}); text and binary files are strings.
_BODY_TYPES = {"json": OpenApiTypes.OBJECT, "csv": OpenApiTypes.STR, "jsonl": OpenApiTypes.STR}


def file_responses(formats: Iterable[str]) -> dict:
    """`extend_schema(responses=...)` of a download offered in `formats` (e.g. csv, json, xlsx, pdf)."""
    return {(200, EXPORT_MEDIA_TYPES[kind]): _BODY_TYPES.get(kind, OpenApiTypes.BINARY) for kind in formats}
