"""A JSON renderer on orjson, for API lists that splice JSON stored in the database into the answer
as it is (orjson.Fragment) instead of decoding it and encoding it again."""

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_encoder = JSONEncoder()  # DRF's own conversions (dates, decimals, lazy strings, …) for anything orjson has not


class OrjsonRenderer(JSONRenderer):
    """application/json like DRF's JSONRenderer (the same JSON values; compact, UTF-8), written by orjson,
    which also copies an orjson.Fragment (JSON text, e.g. a jsonb column read as text) into the output
    unchanged."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        body = orjson.dumps(data, default=_encoder.default)
        # Indentation asked for in the Accept header (DRF's ;indent=N), rare: the standard renderer
        # indents what orjson wrote (read back, so fragments are plain values by then).
        if self.get_indent(accepted_media_type or "", renderer_context or {}):
            return super().render(orjson.loads(body), accepted_media_type, renderer_context)
        return body
