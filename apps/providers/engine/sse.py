"""An incremental Server-Sent Events parser, cheap enough to sit on every chunk of a token stream.

It is a push parser: `feed()` takes whatever bytes the socket delivered (aiohttp's `iter_any()`)
and returns the events those bytes completed. Events are split on blank lines with `bytes.split`,
never line by line with readline or a regex, because per-chunk CPU is part of what we measure:
a slow client inflates inter-token latency at high concurrency. The caller stamps each batch of
events with the time its bytes arrived, so an event split across two reads gets the second time.

Only `data:` and `event:` fields matter to LLM APIs; `id:` and `retry:` are read and ignored, and
`:` comment lines (keep-alives) are skipped.
"""

from collections.abc import AsyncIterable, AsyncIterator
from time import monotonic
from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    event: str  # "" when the server sent no `event:` field (the spec's default "message")
    data: str  # the `data:` lines joined with "\n"
    time: float  # time.monotonic() when the bytes that completed the event arrived


class SSEParser:
    """Splits a byte stream into (event, data) pairs. One parser per response."""

    __slots__ = ("_buffer", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """The events completed by `chunk`, in order; an unfinished event waits for more bytes."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:  # a UTF-8 byte-order mark may open the stream, possibly split
            if len(buffer) < 3 and _BOM.startswith(buffer):
                self._buffer = buffer
                return []
            self._started = True
            buffer = buffer.removeprefix(_BOM)
        if b"\r" in buffer:
            buffer = _normalize_newlines(buffer)
        if b"\n\n" not in buffer:
            self._buffer = buffer
            return []
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop()
        events = []
        for block in blocks:
            parsed = _parse_block(block)
            if parsed is not None:
                events.append(parsed)
        return events

    def flush(self) -> list[tuple[str, str]]:
        """At end of stream: the last event when its final line is complete but the blank line
        that should close it never came (lenient servers). A line cut in half is dropped, so a
        stream cut mid-JSON reads as cut, not as a protocol error."""
        buffer, self._buffer = self._buffer, b""
        if buffer.endswith(b"\r"):  # a lone CR ends a line too
            buffer = buffer[:-1] + b"\n"
        if not buffer.endswith(b"\n"):
            return []
        parsed = _parse_block(buffer.rstrip(b"\n"))
        return [parsed] if parsed is not None else []

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the end of an event."""
        return len(self._buffer)


def _normalize_newlines(buffer: bytes) -> bytes:
    """CRLF and lone CR to LF. A trailing CR is kept: its LF may be in the next chunk."""
    held = buffer.endswith(b"\r")
    if held:
        buffer = buffer[:-1]
    buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return buffer + b"\r" if held else buffer


def _parse_block(block: bytes) -> tuple[str, str] | None:
    """One event's lines to (event, data); None for a block without data (comments only)."""
    if block.startswith(b"data: ") and b"\n" not in block:  # the common case: a single data line
        return "", block[6:].decode("utf-8", "replace")
    event = ""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 58:  # b":" starts a comment
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if not data:
        return None
    return event, b"\n".join(data).decode("utf-8", "replace")


async def iter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[SSEEvent]:
    """Events of a byte stream (e.g. `response.content.iter_any()`), stamped on arrival.

    The adapters drive `SSEParser` directly to save an async-generator hop per chunk; this is the
    convenient form for everything else."""
    parser = SSEParser()
    async for chunk in chunks:
        arrived = monotonic()
        for event, data in parser.feed(chunk):
            yield SSEEvent(event, data, arrived)
    for event, data in parser.flush():
        yield SSEEvent(event, data, monotonic())
