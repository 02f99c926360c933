"""What a load sweep with a workload sends (issue 13): the request plan, the words-to-tokens probe, and the
step specs of single-turn, multi-turn and trace workloads. The runner (runner.py) drives them.

* Single-turn synthetic and dataset workloads run through `run_step`; request i is `plan.request(i, 0, [])`.
* Multi-turn workloads run through `run_sessions`: a closed-loop level is the number of sessions in flight
  (user-centric mode: the number of users, each sending a turn every `turn_gap_s`), an open-loop level is
  session arrivals per second. Each turn carries the real earlier responses (the runner keeps the history).
* Traces replay on their own clock: an open-loop level is a speed-up of the trace (1 = as recorded), on top of
  the workload's own `trace.speedup`.
"""

import math

import aiohttp
import numpy as np
from django.conf import settings

from apps.batches.models import LoadSweep, LoadSweepStep
from apps.providers.engine.loadgen import StepSpec
from apps.providers.engine.sessions import SessionStepSpec
from apps.providers.engine.types import EndpointConfig, GenerationRequest
from apps.workloads.engine.calibration import CalibrationFit, fit_calibration
from apps.workloads.engine.plan import RequestPlan
from apps.workloads.engine.tokens import words_text

PROBE_WORDS = (32, 128, 512, 1024, 2048, 64)  # six prompts, max_tokens=1 (design §3)
DEFAULT_PLAN_REQUESTS = 2048  # per step, when a step is bounded by time only
PLAN_MAX_REQUESTS = 20_000  # over the whole sweep; beyond it requests repeat in order


def needs_calibration(sweep: LoadSweep) -> bool:
    """Token lengths without a tokenizer are calibrated against the server's own count (not for datasets,
    whose text is given, nor literal-prompt traces)."""
    version = sweep.workload_version
    if version is None or version.tokenizer_id is not None:
        return False
    return version.spec.get("source") in ("synthetic", "trace")


async def calibrate(adapter, config: EndpointConfig, model: str) -> CalibrationFit | None:
    """Fit `prompt_tokens = a + b · words` from six one-token requests; None when the server reports no usage
    or the fit is meaningless (the plan then estimates lengths and says so)."""
    rng = np.random.default_rng(0)
    timeout = aiohttp.ClientTimeout(total=config.total_timeout_s, sock_connect=config.connect_timeout_s)
    samples: list[tuple[int, int]] = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for words in PROBE_WORDS:
            request = GenerationRequest(
                model=model, messages=[{"role": "user", "content": words_text(words, rng)}], max_tokens=1
            )
            result = await adapter.generate(session, request)
            if result.ok and result.input_tokens:
                samples.append((words, result.input_tokens))
    try:
        return fit_calibration(samples)
    except ValueError:
        return None


def per_step_count(sweep: LoadSweep) -> int:
    """Requests (sessions, for multi-turn workloads) planned per step: its requests and warm-up when counted,
    else DEFAULT_PLAN_REQUESTS; a step that sends more reuses them in order."""
    if sweep.step_request_count:
        return min(settings.LOAD_STEP_MAX_REQUESTS, sweep.step_request_count + sweep.warmup_requests)
    return DEFAULT_PLAN_REQUESTS


def plan_count(sweep: LoadSweep) -> int:
    """What the sweep plans: distinct requests for every step (so step 2 does not resend step 1's prompts to a
    server that cached them), at most PLAN_MAX_REQUESTS; traces plan every row in their window."""
    if sweep.workload_version.spec.get("source") == "trace":
        return settings.LOAD_STEP_MAX_REQUESTS
    if sweep.managed_by:  # a capacity search adds its steps as it goes: plan the most, and reuse in order
        return PLAN_MAX_REQUESTS
    return min(PLAN_MAX_REQUESTS, per_step_count(sweep) * len(sweep.levels) * max(1, sweep.trials))


def step_offset(sweep: LoadSweep, step: LoadSweepStep) -> int:
    """The plan index of a step's first request (traces replay the same rows in every step)."""
    if sweep.workload_version.spec.get("source") == "trace":
        return 0
    return step.index * per_step_count(sweep)


def build_sweep_plan(sweep: LoadSweep, calibration: CalibrationFit | None) -> RequestPlan:
    from apps.workloads.services import workload_plan

    return workload_plan(
        version=sweep.workload_version, count=plan_count(sweep), model=sweep.model, calibration=calibration,
        temperature=sweep.temperature, seed=sweep.seed,
    )  # fmt: skip


def workload_step_spec(sweep: LoadSweep, step: LoadSweepStep, plan: RequestPlan) -> StepSpec | SessionStepSpec:
    """The step of a workload sweep (see the module docstring for what a level means)."""
    spec = sweep.workload_version.spec
    common = dict(
        duration_s=sweep.step_duration_s, request_count=sweep.step_request_count,
        warmup_requests=sweep.warmup_requests, warmup_s=sweep.warmup_s,
    )  # fmt: skip
    closed = sweep.mode == LoadSweep.Mode.CLOSED
    offsets = None
    if spec["source"] == "trace":
        offsets = np.asarray(plan.offsets_s, dtype=float) / float(step.level)
        if sweep.step_duration_s is None and sweep.step_request_count is None:  # pragma: no cover - form refuses it
            common["duration_s"] = float(offsets[-1]) + 1.0
    if not plan.multi_turn:
        if offsets is not None:
            return StepSpec(mode="open", offsets_s=offsets, seed=sweep.seed + step.index, **common)
        if closed:
            return StepSpec(mode="closed", concurrency=int(step.level), **common)
        return StepSpec(mode="open", rate_rps=step.level, arrivals=sweep.arrivals, seed=sweep.seed + step.index,
                        **common)  # fmt: skip
    sessions = spec.get("sessions") or {}
    if offsets is not None:
        return SessionStepSpec(mode="open", offsets_s=offsets, seed=sweep.seed + step.index, **common)
    if closed and sessions.get("mode") == "user_centric":
        return SessionStepSpec(mode="user_centric", users=int(step.level), turn_gap_s=float(sessions["turn_gap_s"]),
                               seed=sweep.seed + step.index, **common)  # fmt: skip
    if closed:
        return SessionStepSpec(mode="closed", concurrency=int(step.level), seed=sweep.seed + step.index, **common)
    return SessionStepSpec(mode="open", rate_rps=step.level, arrivals=sweep.arrivals, seed=sweep.seed + step.index,
                           **common)  # fmt: skip


class History:
    """Each running session's messages so far: its user turns and the server's real responses (content, never
    reasoning). A session's history is dropped when it ends or a turn fails (the engine then ends it)."""

    __slots__ = ("_messages", "_plan")

    def __init__(self, plan: RequestPlan):
        self._plan = plan
        self._messages: dict[int, list[dict[str, str]]] = {}

    def request(self, s: int, t: int) -> GenerationRequest:
        return self._plan.request(s, t, self._messages.get(s, []) if t else [])

    def record(self, s: int, t: int, request: GenerationRequest, text: str | None) -> None:
        """After turn t of session s: keep its exchange for the next turn (text None: the turn failed)."""
        if text is None or t + 1 >= self._plan.n_turns(s):
            self._messages.pop(s, None)
            return
        user = self._plan.sessions[s % len(self._plan.sessions)].turns[t].user
        self._messages.setdefault(s, []).extend(
            ({"role": "user", "content": user}, {"role": "assistant", "content": text})
        )

    def __len__(self) -> int:
        return len(self._messages)


def describe_basis(plan: RequestPlan, calibration: CalibrationFit | None, tokenizer_name: str | None) -> dict:
    """What the run stores in `token_calibration`: how the lengths it asked for were made."""
    if plan.length_basis == "tokenizer":
        return {"method": "tokenizer", "tokenizer": tokenizer_name}
    if calibration is not None:
        return calibration.as_dict()
    return {"method": "estimated", "note": "the server reported no token counts; lengths are estimated"}


def stored_calibration(data: dict | None) -> CalibrationFit | None:
    """A fit stored on the sweep, rebuilt (so a resumed sweep sends the same lengths)."""
    if not data or data.get("method") != "probe":
        return None
    return CalibrationFit(
        overhead_tokens=float(data["overhead_tokens"]), tokens_per_word=float(data["tokens_per_word"]),
        r2=float(data.get("r2", math.nan)), samples=tuple(tuple(s) for s in data.get("samples", [])),
    )  # fmt: skip
