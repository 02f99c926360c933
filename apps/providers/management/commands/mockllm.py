"""manage.py mockllm: serve the OpenAI-compatible mock (apps/providers/mockllm.py) until Ctrl-C, to
point an endpoint or a bench at a server whose latencies (and, with --max-batch or
--token-budget-per-s, capacity: docs/mockllm-capacity.md) are known. --workers N serves the port
from N processes."""

import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.providers.engine.knownanswer import known_answers
from apps.providers.mockllm import MockProfile, run


def profile_from_options(options: dict[str, Any]) -> MockProfile:
    """The MockProfile the command line asks for (kept apart from `handle` so it can be tested)."""
    profile = MockProfile(
        ttft_ms=options["ttft_ms"],
        itl_ms=options["itl_ms"],
        output_tokens=options["output_tokens"],
        jitter_ms=options["jitter_ms"],
        tokens_per_chunk=options["tokens_per_chunk"],
        per_prompt_token_us=options["per_prompt_token_us"],
        error_rate=options["error_rate"],
        error_status=options["error_status"],
        retry_after_s=options["retry_after_s"],
        cut_rate=options["cut_rate"],
        seed=options["seed"],
        model=options["model"],
        prefix_cache=options["prefix_cache"],
        prefix_cache_blocks=options["prefix_cache_blocks"],
        reasoning_tokens=options["reasoning_tokens"],
        request_log_size=options["request_log_size"],
        max_batch=options["max_batch"],
        token_budget_per_s=options["token_budget_per_s"],
        kv_cache_tokens=options["kv_cache_tokens"],
        answer_key=tuple(options["answer_key"]) if options["answer_key"] else "",
        answer_accuracy=options["answer_accuracy"],
        answer_style=options["answer_style"],
        no_answer_rate=options["no_answer_rate"],
        answer_seed=options["answer_seed"],
    )
    if min(profile.ttft_ms, profile.itl_ms, profile.jitter_ms, profile.per_prompt_token_us) < 0:
        raise CommandError("latencies must not be negative")
    if profile.output_tokens < 1 or profile.tokens_per_chunk < 1:
        raise CommandError("--output-tokens and --tokens-per-chunk must be at least 1")
    if not (0 <= profile.error_rate <= 1 and 0 <= profile.cut_rate <= 1):
        raise CommandError("--error-rate and --cut-rate are shares between 0 and 1")
    if not 400 <= profile.error_status <= 599:
        raise CommandError("--error-status must be an HTTP error status (400-599)")
    if profile.prefix_cache_blocks < 1:
        raise CommandError("--prefix-cache-blocks must be at least 1")
    if profile.reasoning_tokens < 0 or profile.request_log_size < 0:
        raise CommandError("--reasoning-tokens and --request-log-size must not be negative")
    if profile.max_batch is not None and profile.max_batch < 1:
        raise CommandError("--max-batch must be at least 1 (leave it out for no limit)")
    budget = profile.token_budget_per_s
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise CommandError("--token-budget-per-s must be a number above 0 (leave it out for no limit)")
    if profile.kv_cache_tokens < 1:
        raise CommandError("--kv-cache-tokens must be at least 1")
    try:  # loads the key files now (cached for the server), so a bad one stops here
        known_answers(profile.answer_key, accuracy=profile.answer_accuracy, style=profile.answer_style,
                      no_answer_rate=profile.no_answer_rate, seed=profile.answer_seed)  # fmt: skip
    except ValueError as error:
        raise CommandError(f"--answer-*: {error}") from None
    return profile


def workers_from_options(options: dict[str, Any]) -> int:
    """How many processes to serve with (checked)."""
    workers = options["workers"]
    if workers < 1:
        raise CommandError("--workers must be at least 1")
    return workers


class Command(BaseCommand):
    help = "Serve an OpenAI-compatible mock LLM with injected latencies, errors and cut streams."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--ttft-ms", type=float, default=50.0, help="Time to first token.")
        parser.add_argument("--itl-ms", type=float, default=10.0, help="Time between tokens.")
        parser.add_argument("--output-tokens", type=int, default=128, help="Answer length (max_tokens caps it).")
        parser.add_argument("--jitter-ms", type=float, default=0.0, help="Each chunk moves by ± up to this.")
        parser.add_argument("--tokens-per-chunk", type=int, default=1)
        parser.add_argument("--per-prompt-token-us", type=float, default=0.0, help="Extra TTFT per prompt token.")
        parser.add_argument("--error-rate", type=float, default=0.0, help="Share of requests that fail.")
        parser.add_argument("--error-status", type=int, default=500, help="The status of a failed request.")
        parser.add_argument("--retry-after-s", type=float, default=None, help="Retry-After sent with a 429.")
        parser.add_argument("--cut-rate", type=float, default=0.0, help="Share of streams dropped half-way.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--model", default="mock", help="The model id /v1/models lists.")
        parser.add_argument(
            "--prefix-cache",
            action="store_true",
            help="Cache prompt prefixes in 64-character blocks: cached tokens skip prefill "
            "(--per-prompt-token-us) and are reported as usage.prompt_tokens_details.cached_tokens.",
        )
        parser.add_argument(
            "--prefix-cache-blocks", type=int, default=100_000, help="Blocks the prefix cache keeps (LRU)."
        )
        parser.add_argument(
            "--reasoning-tokens",
            type=int,
            default=0,
            help="Reasoning deltas (reasoning_content) before every chat answer, reported as "
            "usage.completion_tokens_details.reasoning_tokens.",
        )
        parser.add_argument(
            "--request-log-size",
            type=int,
            default=10_000,
            help="Request bodies kept for GET /_mock/requests (DELETE clears them); 0 keeps none.",
        )
        parser.add_argument(
            "--max-batch",
            type=int,
            default=None,
            help="Requests served at once; later ones wait first come, first served, and the wait counts in "
            "their TTFT (default: no limit). Per worker.",
        )
        parser.add_argument(
            "--token-budget-per-s",
            type=float,
            default=None,
            help="Output tokens per second shared by the running requests: each next token comes after "
            "max(ITL, running/budget) (default: no limit). Per worker.",
        )
        parser.add_argument(
            "--kv-cache-tokens",
            type=int,
            default=262_144,
            help="The KV cache's size in tokens: vllm:gpu_cache_usage_perc is the running requests' prompt and "
            "generated tokens over it.",
        )
        parser.add_argument(
            "--answer-key",
            action="append",
            metavar="FILE",
            help="Known answers (docs/mockllm-known-answers.md): a suite's answer key in JSON Lines; a prompt asking "
            "one of its questions is answered from it. Repeat for several suites.",
        )
        parser.add_argument(
            "--answer-accuracy",
            default=1.0,
            help='Share of each subject\'s items answered right: 0.8, or per subject \'{"math": 0.9, "*": 0.7}\'.',
        )
        parser.add_argument("--answer-style", default="auto", choices=["auto", "cot", "letter", "gsm8k"])
        parser.add_argument(
            "--no-answer-rate", type=float, default=0.0, help="Share of each subject's items answered with no answer."
        )
        parser.add_argument("--answer-seed", type=int, default=0, help="Picks which items are answered right.")
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="Processes sharing the port (SO_REUSEPORT); each has its own capacity, counters and caches.",
        )

    def handle(self, *args, host, port, **options):
        profile = profile_from_options(options)
        workers = workers_from_options(options)
        plural = f", {workers} workers" if workers > 1 else ""
        self.stdout.write(f"mockllm serving http://{host}:{port}/v1 ({profile}{plural}); Ctrl-C to stop")
        self.stdout.flush()
        try:
            run(host, port, profile, workers=workers)
        except RuntimeError as error:
            raise CommandError(str(error)) from error
