"""How parsed datasets and tokenizers are stored in the database and loaded back, with per-process caches.

A dataset's payload is `zlib(orjson(normalized))`: the ParsedDataset as plain lists (a conversation is
`[id, system, [[user, ref_output_tokens, output_tokens, reference], …]]`, a trace row
`[t_ms, input_tokens, prompt, output_tokens, hash_ids, session, delay_ms]`), which is a third of the size of the
same data as objects with keys and loads back to an equal ParsedDataset. Datasets and tokenizers never change
once stored, so what was loaded is kept in small LRU caches keyed by a hash of the stored bytes.
"""

import hashlib
import threading
import zlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

from apps.workloads.engine.tokens import TokenCounter, load_tokenizer
from apps.workloads.engine.types import Conversation, ParsedDataset, TraceRow, Turn

if TYPE_CHECKING:
    from apps.workloads.models import Tokenizer, WorkloadDataset

PAYLOAD_VERSION = 1
DATASET_CACHE_SIZE = 4  # a 100k-conversation dataset is ~100 MB of Python objects
TOKENIZER_CACHE_SIZE = 8


class _LRU:
    """A small thread-safe least-recently-used map (the ASGI server runs sync views on threads)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_datasets = _LRU(DATASET_CACHE_SIZE)
_counters = _LRU(TOKENIZER_CACHE_SIZE)


def _normalized(parsed: ParsedDataset) -> dict:
    return {
        "v": PAYLOAD_VERSION,
        "kind": parsed.kind,
        "conversations": [
            [c.id, c.system, [[t.user, t.ref_output_tokens, t.output_tokens, t.reference] for t in c.turns]]
            for c in parsed.conversations
        ],
        "rows": [
            [r.t_ms, r.input_tokens, r.prompt, r.output_tokens, r.hash_ids, r.session, r.delay_ms] for r in parsed.rows
        ],
        "skipped": dict(parsed.skipped),
        "notes": list(parsed.notes),
        "block_size": parsed.block_size,
    }


def _from_normalized(data: dict) -> ParsedDataset:
    if data.get("v") != PAYLOAD_VERSION:
        raise ValueError(f"unknown dataset payload version {data.get('v')!r}")
    return ParsedDataset(
        kind=data["kind"],
        conversations=tuple(
            Conversation(
                id=cid, system=system, turns=tuple(Turn(u, ref, out, reference) for u, ref, out, reference in turns)
            )
            for cid, system, turns in data["conversations"]
        ),
        rows=tuple(
            TraceRow(t_ms, input_tokens, prompt, output_tokens, tuple(hash_ids), session, delay_ms)
            for t_ms, input_tokens, prompt, output_tokens, hash_ids, session, delay_ms in data["rows"]
        ),
        skipped=dict(data["skipped"]),
        notes=tuple(data["notes"]),
        block_size=data["block_size"],
    )


def _payload_key(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def dump_dataset(parsed: ParsedDataset) -> bytes:
    """The stored form of a parsed dataset: zlib(orjson(normalized)). `load_dataset` returns an equal one."""
    # Level 1: about 4× faster than the default 6 on conversation text for a payload a few percent larger; at the
    # default, compressing took longer than parsing (15 MB/s on realistic ShareGPT text).
    payload = zlib.compress(orjson.dumps(_normalized(parsed)), 1)
    _datasets.put(_payload_key(payload), parsed)  # the upload's preview and first plan need not load it again
    return payload


def load_dataset(payload: bytes | memoryview) -> ParsedDataset:
    """The ParsedDataset of a stored payload, cached per process by the payload's hash (datasets never change)."""
    payload = bytes(payload)  # PostgreSQL hands a BinaryField back as a memoryview
    key = _payload_key(payload)
    parsed = _datasets.get(key)
    if parsed is None:
        parsed = _from_normalized(orjson.loads(zlib.decompress(payload)))
        _datasets.put(key, parsed)
    return parsed


def dataset_parsed(dataset: "WorkloadDataset") -> ParsedDataset:
    """The ParsedDataset of a stored dataset, cached by its id and file sha256: once loaded, the payload is not
    read from the database again (pass a dataset loaded with `.defer("payload")`)."""
    key = f"dataset:{dataset.pk}:{dataset.sha256}"
    parsed = _datasets.get(key)
    if parsed is None:
        parsed = load_dataset(dataset.payload)
        _datasets.put(key, parsed)
    return parsed


def compress_tokenizer(content: bytes) -> bytes:
    """The stored form of a tokenizer.json."""
    return zlib.compress(content, 6)


def remember_counter(sha256: str, counter: TokenCounter) -> None:
    """Keep a tokenizer loaded at upload time, so its first use does not load it again."""
    _counters.put(sha256, counter)


def counter_for(tokenizer: "Tokenizer | None") -> TokenCounter | None:
    """The loaded TokenCounter of a stored tokenizer (None for none), cached per process by the file's sha256.

    The compressed content is read only on a cache miss, so callers may pass a tokenizer loaded without it."""
    if tokenizer is None:
        return None
    counter = _counters.get(tokenizer.sha256)
    if counter is None:
        counter = load_tokenizer(zlib.decompress(bytes(tokenizer.content)))
        _counters.put(tokenizer.sha256, counter)
    return counter


def clear_caches() -> None:
    """Forget every loaded dataset and tokenizer (tests)."""
    _datasets.clear()
    _counters.clear()
