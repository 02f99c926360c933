"""The request planner: a normalized workload spec (+ dataset, tokenizer, calibration) → every request body a step sends.

`build_plan` does the slow work once, before a step starts: drawing lengths, cutting token-exact text, sampling and
filtering a dataset, windowing a trace. `RequestPlan.request(s, t, history)` then only assembles one request from
strings it already holds (a few µs), so building a request never competes with dispatching on time.

Lengths (`RequestPlan.length_basis`):
* "tokenizer": with a TokenCounter, text is cut to exactly N content tokens (tokens.ExactText).
* "calibrated": with a CalibrationFit and no tokenizer, a prompt of N tokens is `calibration.words_for(N)` corpus
  words, which aims at the server's own `prompt_tokens` (the fit includes the template overhead). Parts that are not
  a whole prompt (a prefix, a later turn's message) take `round(N / tokens_per_word)` words, so the overhead is
  counted once per request.
* "estimated": neither: `round(0.75 · N)` words (about 4/3 tokens per English word), labelled as an estimate.

Synthetic: `input_tokens` is the length of the request's own text; a shared prefix of P tokens comes on top, so a
prefixed request asks for P + N tokens (as guidellm's prefix buckets and AIPerf's prefix prompts do).

Dataset: the conversations are shuffled with the spec seed, then the `dataset` filters are applied to candidates in
that order, tokenised in batches only as needed (with the tokenizer, else characters / 4), until `sample` (or
`count`, if fewer) pass; skips are counted by reason, added to the parser's. Fewer than `count` are repeated in
order. Output lengths: `output_from` "reference" (the reference answer's tokens), "file" (the file's output length)
or "distribution" (`output_tokens` draws); a turn without one takes an `output_tokens` draw, else 128 tokens (noted).
`multi_turn` false sends each conversation's first user turn (with its system prompt); true sends its turns up to
`max_turns`, with `sessions.think_time_s` between them (0 without a sessions block).

Trace: rows are timed on the trace's clock (a `delay` row after the previous row of its session, or of the file).
Rows with a session id are the turns of one session in file order; other rows are one-turn sessions. Sessions whose
first row lies in [window_start_s, window_end_s) are kept (cut at the window's end) and ordered by that first row;
`count` caps the requests, taking sessions in that order (the last one may be cut). Offsets are measured from the
window start and divided by `speedup`. A later turn's think time is the scaled gap after the previous turn (its
delay, or the difference of their timestamps), and a timestamped one also keeps its own scaled offset. `input_tokens` rows get fresh text of that length, `hash_ids` rows Mooncake blocks
(rows sharing leading ids share those bytes; the block size is the dataset's, as its ids were checked against it,
else the spec's), and literal prompts are sent as they are.

Completions endpoint: the prompt is the content of the messages (system, history, user, in order) joined by a blank
line ("\\n\\n"), roles left out. A synthetic prefix then goes at the start of the user text whatever its placement,
so that the joined prompt is exactly as long as requested.
"""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from apps.providers.engine.types import GenerationRequest
from apps.workloads.engine.calibration import CalibrationFit
from apps.workloads.engine.distributions import sample_lengths, sample_seconds
from apps.workloads.engine.prefix import (
    SEPARATOR,
    BlockCache,
    assign_prefixes,
    block_rule_error,
    build_prefixes,
    mooncake_prompt,
    parse_buckets,
)
from apps.workloads.engine.spec import is_multi_turn
from apps.workloads.engine.tokens import ExactText, TokenCounter, words_text
from apps.workloads.engine.types import Conversation, ParsedDataset, TraceRow, Turn

DEFAULT_OUTPUT_TOKENS = 128  # when a dataset turn or a trace row gives no output length and the spec no distribution
WORDS_PER_TOKEN_ESTIMATE = 0.75
COMPLETIONS_JOIN = "\n\n"
# Each request's own text opens with its number ("<k>: "). The corpus has under 700 word starts, so random starts
# alone collide within a few dozen requests (and two prompts from one start share a long prefix: a cache hit by
# accident); the number keeps every opening distinct, as the legacy "Request {i}: " did, in fewer tokens. A prompt
# under one KV-cache block (16 tokens in vLLM) cannot be hit anyway, so short ones go without it.
TAG_MIN_TOKENS = 16
# One generator per purpose, seeded by (spec seed, purpose), so that changing one part (e.g. think times) does not
# change the draws of another.
INPUT, OUTPUT, TURNS, THINK, CONTENT, PREFIX, SHUFFLE = range(7)


@dataclass(slots=True)
class PlannedTurn:
    """One request of a session: its user message, the output length asked for, and when it goes."""

    user: str
    max_tokens: int
    # Content tokens of the whole first prompt (system + prefix + user) when the plan sets them; None for later turns
    # (their input holds the real responses) and for dataset prompts without a tokenizer.
    requested_input_tokens: int | None
    think_s: float  # think time before this turn (0.0 for turn 0)
    offset_s: float | None = None  # trace: dispatch offset from the step start, scaled by 1/speedup, window applied


@dataclass(slots=True)
class PlannedSession:
    """A conversation: an optional system message and its turns (one turn for single-turn workloads)."""

    index: int
    system: str | None
    turns: list[PlannedTurn]
    prefix_id: int | None = None  # which shared prefix it starts with (flat index over the buckets' prefixes)


class RequestPlan:
    """Every session and turn a step may send, and how to turn one into a GenerationRequest.

    `request(s, t, history)` takes the session index `s`, the turn index `t` and the history so far (the previous
    turns' user and assistant messages, the assistant ones holding the server's real responses) and returns the
    request. An `s` at or beyond `len(sessions)` wraps around (`s % len(sessions)`), so a long step re-sends the plan
    from the start; its `session_index` keeps the `s` given, so repeated sessions stay apart in the results.
    """

    def __init__(
        self,
        sessions: list[PlannedSession],
        *,
        multi_turn: bool,
        length_basis: str,
        model: str,
        request_options: dict,
        offsets_s: np.ndarray | None = None,
        skipped: dict[str, int] | None = None,
        notes: list[str] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ):
        if not sessions:
            raise ValueError("a request plan needs at least one session")
        self.sessions = sessions
        self.multi_turn = multi_turn
        self.offsets_s = offsets_s
        self.length_basis = length_basis
        self.skipped = dict(skipped or {})
        self.notes = list(notes or [])
        self.endpoint = request_options.get("endpoint", "chat")
        pin = request_options.get("pin_output", "none")
        self._ignore_eos = "ignore_eos" in pin
        self._min_tokens = "min_tokens" in pin
        self._completions = self.endpoint == "completions"
        self._n = len(sessions)
        # The system message dict is built once per session and shared by its requests (nothing mutates it).
        self._heads = [[{"role": "system", "content": s.system}] if s.system is not None else [] for s in sessions]
        self._fixed = {
            "model": model,
            "temperature": temperature,
            "seed": seed,
            "endpoint": self.endpoint,
            "top_k": request_options.get("top_k"),
            "min_p": request_options.get("min_p"),
            "repetition_penalty": request_options.get("repetition_penalty"),
            "stop": request_options.get("stop"),
            "response_format": request_options.get("response_format"),
            "ignore_eos": self._ignore_eos,
        }

    def request(self, s: int, t: int, history: list[dict[str, str]]) -> GenerationRequest:
        """The request of turn `t` of session `s`: messages = [system?] + history + [user]."""
        k = s % self._n
        turn = self.sessions[k].turns[t]
        messages = [*self._heads[k], *history, {"role": "user", "content": turn.user}]
        multi = self.multi_turn
        return GenerationRequest(
            messages=messages,
            prompt=COMPLETIONS_JOIN.join([m["content"] for m in messages]) if self._completions else None,
            max_tokens=turn.max_tokens,
            min_tokens=turn.max_tokens if self._min_tokens else None,
            session_index=s if multi else None,
            turn_index=t if multi else None,
            requested_input_tokens=turn.requested_input_tokens,
            **self._fixed,
        )

    def n_turns(self, s: int) -> int:
        """How many turns session `s` has (wrapping as request() does)."""
        return len(self.sessions[s % self._n].turns)

    def think_s(self, s: int, t: int) -> float:
        """Think time before turn `t` of session `s`, in seconds (0.0 for turn 0)."""
        return self.sessions[s % self._n].turns[t].think_s

    @property
    def request_count(self) -> int:
        """Requests in the plan: the turns of every session."""
        return sum(len(s.turns) for s in self.sessions)


def build_plan(
    spec: dict,
    *,
    count: int,
    model: str,
    dataset: ParsedDataset | None = None,
    counter: TokenCounter | None = None,
    calibration: CalibrationFit | None = None,
    temperature: float | None = None,
    seed: int | None = None,
) -> RequestPlan:
    """The plan of `count` sessions (single-turn: requests; trace: at most `count` rows) for a NORMALIZED spec.

    Deterministic for the spec's `seed`. `temperature` and `seed` are the sampling options sent with every request
    (the sweep's knobs); `seed` does not change what is planned. ValueError with a clear message when the inputs
    cannot make a plan (no dataset for a dataset spec, nothing passes the filters, an empty trace window).
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count: must be an integer ≥ 1, not {count!r}")
    source = spec["source"]
    text = _TextMaker(counter, calibration)
    if source == "synthetic":
        built = _synthetic(spec, count, text)
    elif source == "dataset":
        if dataset is None or dataset.kind != "conversations":
            raise ValueError("dataset: a dataset workload needs an uploaded dataset of conversations or prompts")
        built = _from_dataset(spec, count, dataset, text)
    elif source == "trace":
        if dataset is None or dataset.kind != "trace":
            raise ValueError("trace: a trace workload needs an uploaded trace")
        built = _from_trace(spec, count, dataset, text)
    else:
        raise ValueError(f"source: {source!r} is not synthetic, dataset or trace")
    if text.exact is not None and text.exact.mismatches:
        built.notes.append(
            f"{text.exact.mismatches} text(s) could not be cut to the exact token length; they are within a few "
            "tokens, and the length report shows requested against delivered."
        )
    return RequestPlan(
        built.sessions,
        multi_turn=built.multi_turn,
        length_basis=text.basis,
        model=model,
        request_options=spec.get("request", {}),
        offsets_s=built.offsets_s,
        skipped=built.skipped,
        notes=built.notes,
        temperature=temperature,
        seed=seed,
    )


@dataclass(slots=True)
class _Built:
    sessions: list[PlannedSession]
    multi_turn: bool
    skipped: dict[str, int]
    notes: list[str]
    offsets_s: np.ndarray | None = None


def _rng(spec: dict, purpose: int) -> np.random.Generator:
    return np.random.default_rng([spec.get("seed", 0), purpose])


class _TextMaker:
    """Prompt text of a token length by the best means available (see the module docstring)."""

    def __init__(self, counter: TokenCounter | None, calibration: CalibrationFit | None):
        self.counter = counter
        self.calibration = calibration
        self.exact = ExactText(counter) if counter is not None else None
        self.prefix_tokens: dict[str, int] = {}
        self.basis = "tokenizer" if counter is not None else "calibrated" if calibration is not None else "estimated"

    def words(self, tokens: int, *, whole: bool) -> int:
        """Words for `tokens` tokens: a whole prompt (`whole`, template overhead subtracted) or a part of one."""
        if self.calibration is not None:
            if whole:
                return self.calibration.words_for(tokens)
            return max(1, round(tokens / self.calibration.tokens_per_word))
        return max(1, round(tokens * WORDS_PER_TOKEN_ESTIMATE))

    def make(self, tokens: int, rng: np.random.Generator, *, whole: bool = True, tag: str = "") -> str:
        """Text of `tokens` tokens from a random corpus position, opening with `tag` when it is long enough."""
        return self.after_prefix("", tokens, rng, tag=tag, whole=whole)

    def after_prefix(
        self, prefix: str, tokens: int, rng: np.random.Generator, *, tag: str = "", whole: bool = True
    ) -> str:
        """`prefix` + blank line + `tag` + corpus text, the whole being the prefix's tokens + `tokens` (no prefix:
        just `tag` + corpus text). The prefix bytes are kept; the tag is left out of texts under TAG_MIN_TOKENS."""
        head = prefix + SEPARATOR if prefix else ""
        if self.exact is not None:
            if tokens >= TAG_MIN_TOKENS:
                head += tag
            if prefix and prefix not in self.prefix_tokens:
                self.prefix_tokens[prefix] = len(self.exact.counter.encode(prefix))
            total = tokens + (self.prefix_tokens[prefix] if prefix else 0)
            return self.exact.fit(head, total, self.exact.start(rng))[0]
        words = self.words(tokens, whole=whole)
        if tag and tokens >= TAG_MIN_TOKENS:
            head += tag
            words = max(1, words - len(tag.split()))
        return head + words_text(words, rng)

    def prefixes(self, buckets: list, seed: int) -> list[tuple[str, int]]:
        """(text, target tokens) of every prefix, flat in bucket order; the same bytes for the same seed."""
        if self.exact is not None:
            built = build_prefixes(buckets, seed, self.exact)
            return [(built[i, j][0], b.tokens) for i, b in enumerate(buckets) for j in range(b.count)]
        return [
            (words_text(self.words(b.tokens, whole=False), np.random.default_rng([seed, i, j])), b.tokens)
            for i, b in enumerate(buckets)
            for j in range(b.count)
        ]


class _Prefixes:
    """The spec's shared prefixes and which one each session starts with."""

    def __init__(self, spec: dict, n_sessions: int, text: _TextMaker):
        block = spec.get("prefix")
        self.enabled = block is not None
        self.ids: list[int | None] = [None] * n_sessions
        self.in_system = False
        if not self.enabled:
            return
        buckets = parse_buckets(block["buckets"])
        self.pool = text.prefixes(buckets, spec.get("seed", 0))
        flat = {key: n for n, key in enumerate((i, j) for i, b in enumerate(buckets) for j in range(b.count))}
        self.ids = [flat[key] for key in assign_prefixes(buckets, n_sessions, _rng(spec, PREFIX))]
        # A completions prompt has no system role, so the prefix opens the user text there.
        self.in_system = block.get("placement", "system") == "system" and spec["request"]["endpoint"] == "chat"

    def get(self, s: int) -> tuple[int | None, str | None, int]:
        """(prefix id, text, target tokens) of session `s`; (None, None, 0) without prefixes."""
        pid = self.ids[s]
        if pid is None:
            return None, None, 0
        text, tokens = self.pool[pid]
        return pid, text, tokens


def _synthetic(spec: dict, count: int, text: _TextMaker) -> _Built:
    multi = is_multi_turn(spec)
    if multi:
        turns = sample_lengths(spec["sessions"]["turns"], count, _rng(spec, TURNS))
    else:
        turns = np.ones(count, dtype=np.int64)
    total = int(turns.sum())
    inputs = sample_lengths(spec["input_tokens"], total, _rng(spec, INPUT)).tolist()
    outputs = sample_lengths(spec["output_tokens"], total, _rng(spec, OUTPUT)).tolist()
    if multi:
        think = sample_seconds(spec["sessions"]["think_time_s"], total, _rng(spec, THINK)).tolist()
    else:
        think = [0.0] * total
    prefixes = _Prefixes(spec, count, text)
    rng = _rng(spec, CONTENT)
    sessions, k = [], 0
    for s in range(count):
        pid, prefix, prefix_tokens = prefixes.get(s)
        system, planned = None, []
        for t in range(int(turns[s])):
            n_in = inputs[k]
            requested = None
            if t > 0:
                user = text.make(n_in, rng, whole=False)
            elif prefix is None:
                user, requested = text.make(n_in, rng, tag=f"{s}: "), n_in
            elif prefixes.in_system:
                system, user, requested = prefix, text.make(n_in, rng, tag=f"{s}: "), prefix_tokens + n_in
            else:
                user = text.after_prefix(prefix, n_in, rng, tag=f"{s}: ")
                requested = prefix_tokens + n_in
            planned.append(PlannedTurn(user, outputs[k], requested, think[k] if t else 0.0))
            k += 1
        sessions.append(PlannedSession(s, system, planned, pid))
    notes = []
    if prefixes.enabled:
        notes.append("The input length is each request's own text; the shared prefix's tokens come on top of it.")
    return _Built(sessions, multi, {}, notes)


class _Draws:
    """Lengths from a distribution, drawn in blocks so that one draw costs no validation."""

    def __init__(self, dist: dict | None, rng: np.random.Generator):
        self.dist, self.rng, self.buffer = dist, rng, iter(())
        self.fallbacks = 0

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        if self.dist is None:
            self.fallbacks += 1
            return DEFAULT_OUTPUT_TOKENS
        value = next(self.buffer, None)
        if value is None:
            self.buffer = iter(sample_lengths(self.dist, 1024, self.rng).tolist())
            value = next(self.buffer)
        return value


@dataclass(slots=True)
class _Candidate:
    conversation: Conversation
    turns: tuple[Turn, ...]
    user_tokens: list[int]
    system_tokens: int
    outputs: list[int]


def _from_dataset(spec: dict, count: int, dataset: ParsedDataset, text: _TextMaker) -> _Built:
    """Seeded shuffle, then filters counted lazily in batches until `sample` (or `count`, if fewer) pass."""
    options = spec["dataset"]
    multi = bool(options["multi_turn"])
    max_turns = options["max_turns"] if multi else 1
    conversations = dataset.conversations
    if not conversations:
        raise ValueError("dataset: the dataset holds no usable conversations")
    order = _rng(spec, SHUFFLE).permutation(len(conversations)).tolist()
    needed = min(count, options["sample"])
    output_from = options["output_from"]
    draws = _Draws(spec.get("output_tokens"), _rng(spec, OUTPUT))
    counter = text.counter
    skipped: dict[str, int] = {}
    passed: list[_Candidate] = []
    examined = drawn = 0
    while len(passed) < needed and drawn < len(order):
        batch_size = max(64, 2 * (needed - len(passed)))
        batch = [conversations[i] for i in order[drawn : drawn + batch_size]]
        drawn += len(batch)
        texts: list[str] = []
        plans = []  # (conversation, turns, where its texts start, index of each turn's reference count or None)
        for conversation in batch:
            turns = conversation.turns[:max_turns]
            start = len(texts)
            texts.extend(t.user for t in turns)
            texts.append(conversation.system or "")
            refs: list[int | None] = []
            for t in turns:
                if output_from == "reference" and t.ref_output_tokens is None and t.reference is not None:
                    refs.append(len(texts))
                    texts.append(t.reference)
                else:
                    refs.append(None)
            plans.append((conversation, turns, start, refs))
        lengths = counter.count(texts) if counter is not None else [math.ceil(len(x) / 4) for x in texts]
        for conversation, turns, start, refs in plans:
            if len(passed) == needed:
                break
            examined += 1
            users = lengths[start : start + len(turns)]
            system_tokens = lengths[start + len(turns)]
            outputs = [
                _output(t, output_from, None if r is None else lengths[r], draws)
                for t, r in zip(turns, refs, strict=True)
            ]
            reason = _filter(options, system_tokens, users, outputs)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
            else:
                passed.append(_Candidate(conversation, turns, users, system_tokens, outputs))
    notes = list(dataset.notes)
    basis = "the tokenizer" if counter is not None else "characters / 4 (no tokenizer; an estimate)"
    notes.append(
        f"Filters counted with {basis}: {examined:,} of {len(conversations):,} conversations examined, "
        f"{len(passed):,} kept."
    )
    if not passed:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"
        raise ValueError(f"dataset: no conversation passes the length filters (skipped: {reasons})")
    if len(passed) < count:
        notes.append(f"{len(passed):,} conversations are planned; they are repeated in order up to {count:,}.")
    if draws.fallbacks:
        notes.append(
            f"{draws.fallbacks} turn(s) had no output length ({output_from}); they ask for {DEFAULT_OUTPUT_TOKENS} "
            "tokens."
        )
    think_spec = spec["sessions"]["think_time_s"] if "sessions" in spec else None
    sessions = _dataset_sessions(spec, count, passed, text, think_spec)
    merged = dict(dataset.skipped)
    for reason, n in skipped.items():
        merged[reason] = merged.get(reason, 0) + n
    return _Built(sessions, multi, merged, notes)


def _output(turn: Turn, output_from: str, ref_count: int | None, draws: _Draws) -> int:
    """The output length of a dataset turn (see build_plan's docstring and design §2)."""
    if output_from == "reference":
        value = turn.ref_output_tokens if turn.ref_output_tokens is not None else ref_count
    elif output_from == "file":
        value = turn.output_tokens
    else:
        value = None
    return max(1, value) if value is not None else next(draws)  # an empty reference still asks for one token


def _filter(options: dict, system_tokens: int, users: list[int], outputs: list[int]) -> str | None:
    """The reason a conversation is skipped, or None.

    Lengths are the dataset's own (a shared prefix from the spec is not counted). The input filters look at the
    first prompt (system + first user message); the output minimum at the first
    output; the total at the whole conversation as planned (system + every user message + every output), which for
    one turn is vLLM's prompt + output ≤ max_total_tokens.
    """
    first_input = system_tokens + users[0]
    low, high = options["min_input_tokens"], options["max_input_tokens"]
    if low is not None and first_input < low:
        return "input_below_min"
    if high is not None and first_input > high:
        return "input_above_max"
    low_out = options["min_output_tokens"]
    if low_out is not None and outputs[0] < low_out:
        return "output_below_min"
    total = options["max_total_tokens"]
    if total is not None and system_tokens + sum(users) + sum(outputs) > total:
        return "total_above_max"
    return None


def _dataset_sessions(
    spec: dict, count: int, passed: list[_Candidate], text: _TextMaker, think_spec: dict | None
) -> list[PlannedSession]:
    """`count` sessions from the conversations that passed, repeated in order when there are fewer."""
    prefixes = _Prefixes(spec, count, text)
    total_turns = sum(len(passed[s % len(passed)].turns) for s in range(count))
    think = sample_seconds(think_spec, total_turns, _rng(spec, THINK)).tolist() if think_spec else [0.0] * total_turns
    chat = spec["request"]["endpoint"] == "chat"
    sessions, firsts, k = [], [], 0
    for s in range(count):
        candidate = passed[s % len(passed)]
        pid, prefix, _ = prefixes.get(s)
        system = candidate.conversation.system
        first_user = candidate.turns[0].user
        if prefix is not None and prefixes.in_system:
            system = prefix if system is None else prefix + SEPARATOR + system
        elif prefix is not None:
            first_user = prefix + SEPARATOR + first_user
        planned = []
        for t, (turn, output) in enumerate(zip(candidate.turns, candidate.outputs, strict=True)):
            planned.append(PlannedTurn(first_user if t == 0 else turn.user, output, None, think[k] if t else 0.0))
            k += 1
        sessions.append(PlannedSession(s, system, planned, pid))
        firsts.append([system, first_user] if chat else [COMPLETIONS_JOIN.join(x for x in (system, first_user) if x)])
    if text.counter is not None:
        # The requested length of a first prompt is its exact content tokens, counted as it will be sent: each
        # message apart for chat (a template wraps each one), the joined prompt for completions.
        flat = [x for parts in firsts for x in parts if x]
        counts = iter(text.counter.count(flat))
        for session, parts in zip(sessions, firsts, strict=True):
            session.turns[0].requested_input_tokens = sum(next(counts) for x in parts if x)
    return sessions


def _trace_times(rows: Sequence[TraceRow]) -> list[float]:
    """Each row's time in ms on the trace's clock: its timestamp, or its delay after the previous row of its
    session (the previous row of the file for rows without a session), or that previous row's time."""
    times: list[float] = []
    last: dict[str | None, float] = {}
    for row in rows:
        if row.t_ms is not None:
            t = row.t_ms
        else:
            base = last.get(row.session, times[-1] if times else 0.0)
            t = base + (row.delay_ms or 0.0)
        times.append(t)
        last[row.session] = t
    return times


class _WordBlocks:
    """Mooncake blocks as words (no tokenizer): each (hash id, length) made once from a generator seeded by
    (seed, hash id), so a shorter last block is the start of the full one and shared ids give identical bytes."""

    def __init__(self, text: _TextMaker, seed: int):
        self.text, self.seed, self.cache = text, seed, {}

    def prompt(self, hash_ids: Sequence[int], input_tokens: int, block_size: int) -> str:
        error = block_rule_error(len(hash_ids), input_tokens, block_size)
        if error:
            raise ValueError(error)
        last = input_tokens - (len(hash_ids) - 1) * block_size
        parts = []
        for n, h in enumerate(hash_ids):
            key = (h, block_size if n < len(hash_ids) - 1 else last)
            if key not in self.cache:
                words = self.text.words(key[1], whole=False)
                self.cache[key] = words_text(words, np.random.default_rng([self.seed, h]))
            parts.append(self.cache[key])
        return " ".join(parts)


def _from_trace(spec: dict, count: int, dataset: ParsedDataset, text: _TextMaker) -> _Built:
    """Rows grouped into sessions, windowed on the trace's clock, offsets scaled by 1/speedup, capped at `count`."""
    options = spec["trace"]
    rows = dataset.rows
    times = _trace_times(rows)
    groups: dict[object, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row.session if row.session is not None else ("row", i), []).append(i)
    ordered = sorted(groups.values(), key=lambda members: times[members[0]])  # stable: ties keep file order
    start_ms = float(options["window_start_s"]) * 1000
    end_s = options["window_end_s"]
    end_ms = math.inf if end_s is None else float(end_s) * 1000
    kept: list[list[int]] = []
    for members in ordered:
        if not start_ms <= times[members[0]] < end_ms:
            continue
        inside = []
        for i in members:  # a session is cut at the window's end: a later turn cannot go without the earlier ones
            if times[i] >= end_ms:
                break
            inside.append(i)
        kept.append(inside)
    in_window = sum(len(m) for m in kept)
    if not kept:
        end = "∞" if end_s is None else f"{end_s:g}"
        raise ValueError(
            f"trace: the window [{options['window_start_s']:g} s, {end} s) holds no requests; the trace's rows run "
            f"from {min(times) / 1000:g} s to {max(times) / 1000:g} s"
        )
    notes = list(dataset.notes)
    if all(row.t_ms is None and row.delay_ms is None for row in rows):
        notes.append("The trace has no timestamps: every request is due at the start of the step.")
    skipped = dict(dataset.skipped)
    if in_window < len(rows):
        skipped["outside_window"] = skipped.get("outside_window", 0) + len(rows) - in_window
    capped, total = [], 0
    for members in kept:
        if total >= count:
            break
        capped.append(members[: count - total])
        total += len(capped[-1])
    if total < in_window:
        notes.append(
            f"The plan holds the first {total:,} of the {in_window:,} requests in the window (sessions in order of "
            "their first request)."
        )
    scale = 1.0 / float(options["speedup"])
    block_size = dataset.block_size or options["block_size"]
    blocks = BlockCache(text.exact, spec.get("seed", 0)) if text.exact else _WordBlocks(text, spec.get("seed", 0))
    rng = _rng(spec, CONTENT)
    sessions, no_output = [], 0
    for s, members in enumerate(capped):
        planned = []
        for t, i in enumerate(members):
            row = rows[i]
            user, requested = _trace_prompt(row, i, block_size, blocks, text, rng, f"{s}-{t}: ")
            if row.output_tokens is None:
                no_output += 1
            offset = (times[i] - start_ms) / 1000 * scale
            timed = row.t_ms is not None or t == 0
            # An engine that times turns by think time waits the trace's gap after the previous turn (its offset_s
            # is the absolute time, for one that can dispatch on it).
            think = 0.0 if t == 0 else max(0.0, times[i] - times[members[t - 1]]) / 1000 * scale
            planned.append(
                PlannedTurn(
                    user,
                    row.output_tokens or DEFAULT_OUTPUT_TOKENS,
                    requested if t == 0 else None,
                    think,
                    offset if timed else None,
                )
            )
        sessions.append(PlannedSession(s, None, planned))
    if no_output:
        notes.append(f"{no_output} row(s) give no output length; they ask for {DEFAULT_OUTPUT_TOKENS} tokens.")
    if text.counter is not None:
        literal = [s.turns[0] for s, m in zip(sessions, capped, strict=True) if rows[m[0]].input_tokens is None]
        for turn, n in zip(literal, text.counter.count([t.user for t in literal]), strict=True):
            turn.requested_input_tokens = n
    offsets = np.array([s.turns[0].offset_s for s in sessions], dtype=np.float64)
    multi = any(len(s.turns) > 1 for s in sessions)
    return _Built(sessions, multi, skipped, notes, offsets)


def _trace_prompt(
    row: TraceRow, index: int, block_size: int, blocks, text: _TextMaker, rng: np.random.Generator, tag: str
) -> tuple[str, int | None]:
    """(prompt, requested tokens) of a trace row: its literal prompt, its hash-id blocks, or fresh corpus text."""
    if row.prompt is not None:
        return row.prompt, None
    n = row.input_tokens
    if row.hash_ids:
        try:
            if isinstance(blocks, BlockCache):
                return mooncake_prompt(row.hash_ids, n, block_size, blocks)[0], n
            return blocks.prompt(row.hash_ids, n, block_size), n
        except ValueError as exc:
            raise ValueError(f"trace row {index + 1} (in time order): {exc}") from None
    return text.make(n, rng, tag=tag), n
