"""A small benchmark written for the project, run against the simulator at two quantizations, so the benchmark,
leaderboard and quantization pages have measured (simulated) scores to show.

* "Demo: serving arithmetic" (GSM8K layout): 40 word problems about serving LLMs, generated from templates with
  seeded numbers and computed answers;
* "Demo: serving knowledge" (MMLU-Pro layout): 30 multiple-choice questions written for the project, in three
  categories (serving, statistics, hardware), the right option placed at a different letter in turn.

Both are built as the bytes of the published layouts and imported like an upload. Their answer keys go to
var/demo-answer-keys/ (git-ignored), which two simulator endpoints read in known-answer mode
(apps/providers/engine/knownanswer.py): the same model as BF16 at accuracy 0.86 and as AWQ at 0.80, with the
same seed, so AWQ gets a subset of BF16's items right and the quantization view has flipped items to show.
Loading again replaces the demo runs (and their measured scores) and reuses unchanged suites.
"""

import hashlib
import json
import os
import random
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from apps.accounts.models import Team
from apps.benchmarks.imports import suite_answer_key, suite_delete, suite_import
from apps.benchmarks.models import FINISHED, BenchmarkRun, BenchmarkSuite
from apps.benchmarks.runner import run_benchmark
from apps.benchmarks.services import TargetSpec, benchmark_run_create, benchmark_run_delete, benchmark_run_start
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant, Score

ARITHMETIC, KNOWLEDGE = "Demo: serving arithmetic", "Demo: serving knowledge"
LETTERS = "ABCDEFGHIJ"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # a demo catalog model (apps/scores/demo.py)
SERVED_AS = "llama-3.1-8b-instruct"
# quantization, simulator name, known-answer accuracy, price in / out per 1M tokens
QUANTIZATIONS = [("BF16", "demo-llama-8b-bf16", 0.86, 0.10, 0.30), ("AWQ", "demo-llama-8b-awq", 0.80, 0.06, 0.18)]
ANSWER_SEED = 15
NO_ANSWER_RATE = 0.05
MAX_CHUNKS = 100


def answer_key_dir() -> Path:
    return Path(settings.BASE_DIR) / "var" / "demo-answer-keys"


# --- the arithmetic problems (GSM8K layout) -------------------------------------------------------------------


def _problems(rng: random.Random) -> list[tuple[str, str, int]]:
    """One problem of each template: (question, worked solution without the final line, answer)."""
    rate, minutes = rng.randint(4, 40), rng.randint(2, 15)
    streams, speed, secs = rng.randint(2, 16), rng.choice((20, 25, 30, 40, 50)), rng.randint(3, 12)
    weights, per_request, fits = rng.choice((16, 20, 24, 40)), rng.choice((1, 2, 4)), rng.randint(5, 30)
    spare = rng.randint(0, per_request - 1)
    memory = weights + per_request * fits + spare
    price, millions = rng.randint(1, 9), rng.randint(2, 40)
    gpus, hourly, hours = rng.randint(2, 8), rng.randint(2, 5), rng.randint(3, 48)
    questions, share = rng.choice((200, 400, 500, 1000)), rng.choice((45, 60, 72, 85, 90))
    queue_ms, ttft_ms, tokens, itl_ms = (
        rng.randint(5, 90),
        rng.randint(40, 300),
        rng.randint(20, 200),
        rng.randint(8, 30),
    )
    per_replica, replicas, added = rng.randint(30, 400), rng.randint(2, 6), rng.randint(1, 4)
    seconds = minutes * 60
    return [
        (f"A server answers {rate} requests per second. How many requests does it answer in {minutes} minutes?",
         f"{minutes} minutes are {minutes} * 60 = {seconds} seconds.\nIt answers {rate} * {seconds} = "
         f"{rate * seconds} requests.", rate * seconds),
        (f"A model generates {speed} tokens per second for each of {streams} streams running at once. How many "
         f"tokens does it generate in {secs} seconds?",
         f"Each second it generates {speed} * {streams} = {speed * streams} tokens.\nIn {secs} seconds that is "
         f"{speed * streams} * {secs} = {speed * streams * secs} tokens.", speed * streams * secs),
        (f"A GPU has {memory} GB of memory. The model weights take {weights} GB and every request being served "
         f"needs {per_request} GB of KV cache. How many requests can run at once?",
         f"The KV cache has {memory} - {weights} = {memory - weights} GB.\nIt holds {memory - weights} / "
         f"{per_request} = {fits} requests (rounded down).", fits),
        (f"An API charges {price} dollars per million output tokens. A batch job produces {millions} million output "
         f"tokens. How many dollars does the job cost?",
         f"The job costs {price} * {millions} = {price * millions} dollars.", price * millions),
        (f"A deployment runs on {gpus} GPUs, and each GPU costs {hourly} dollars per hour. How many dollars does "
         f"running it for {hours} hours cost?",
         f"One hour costs {gpus} * {hourly} = {gpus * hourly} dollars.\n{hours} hours cost {gpus * hourly} * "
         f"{hours} = {gpus * hourly * hours} dollars.", gpus * hourly * hours),
        (f"A benchmark has {questions} questions and a model answers {share} percent of them correctly. How many "
         f"questions does it answer correctly?",
         f"{share} percent of {questions} is {questions} * {share} / 100 = {questions * share // 100}.",
         questions * share // 100),
        (f"A request waits {queue_ms} milliseconds in the queue, gets its first token {ttft_ms} milliseconds after "
         f"it is admitted, then streams {tokens} more tokens at {itl_ms} milliseconds each. How many milliseconds "
         f"pass from its arrival to its last token?",
         f"Streaming takes {tokens} * {itl_ms} = {tokens * itl_ms} milliseconds.\nIn all: {queue_ms} + {ttft_ms} + "
         f"{tokens * itl_ms} = {queue_ms + ttft_ms + tokens * itl_ms} milliseconds.",
         queue_ms + ttft_ms + tokens * itl_ms),
        (f"Each replica of a service handles {per_replica} requests per minute, and {replicas} replicas are running. "
         f"After {added} more replicas are added, how many requests per minute can the service handle?",
         f"There are {replicas} + {added} = {replicas + added} replicas.\nThey handle {replicas + added} * "
         f"{per_replica} = {(replicas + added) * per_replica} requests per minute.", (replicas + added) * per_replica),
    ]  # fmt: skip


def arithmetic_jsonl(rounds: int = 5, seed: int = 2026) -> bytes:
    """GSM8K JSON Lines: `rounds` × 8 problems, all different, the same bytes every time (seeded)."""
    rng = random.Random(seed)
    kept: list[list[tuple[str, str, int]]] = [[] for _ in _problems(random.Random(0))]
    seen: set[str] = set()
    while any(len(problems) < rounds for problems in kept):  # every question once: the mock could not tell twins apart
        for problems, problem in zip(kept, _problems(rng), strict=True):
            if len(problems) < rounds and problem[0] not in seen:
                seen.add(problem[0])
                problems.append(problem)
    lines = [json.dumps({"question": question, "answer": f"{worked}\n#### {answer}"})
             for round_ in range(rounds) for question, worked, answer in (problems[round_] for problems in kept)]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


# --- the knowledge questions (MMLU-Pro layout) ----------------------------------------------------------------

# category → (question, the right option, the wrong ones)
QUESTIONS = {
    "serving": [
        ("Which metric measures the time from sending a request until the first output token arrives?",
         "Time to first token", ["Inter-token latency", "End-to-end latency", "Output throughput", "Queue depth"]),
        ("In a streamed chat completion, what does inter-token latency measure?",
         "The gap between two consecutive output tokens",
         ["The time to load the model", "The time a request waits in the queue", "The whole request's duration",
          "The network round trip to the load balancer"]),
        ("What does continuous batching let an inference server do?",
         "Add new requests to the running batch as others finish",
         ["Run only one request at a time", "Keep the model weights on disk", "Skip the prefill of every prompt",
          "Cache whole HTTP responses"]),
        ("What is kept in the KV cache while a model generates text?",
         "The attention keys and values of the tokens processed so far",
         ["The model's weights", "The users' API keys", "The tokenizer's vocabulary", "The gradients of the last step"]),
        ("Why does prefix caching shorten the time to first token of prompts that share a long system prompt?",
         "It reuses the attention states already computed for the shared prefix",
         ["It skips tokenization", "It lowers the sampling temperature", "It sends fewer output tokens",
          "It compresses the request body"]),
        ("Which setting makes most servers return the same text for the same prompt?",
         "Temperature 0 (greedy decoding)",
         ["A top_p of 1.0", "A larger max_tokens", "Streaming the answer", "A higher presence penalty"]),
        ("As concurrency grows, a server's throughput stops rising while its latency keeps rising. What is the "
         "likeliest cause?", "The server is at capacity and requests queue",
         ["The prompts became shorter", "The tokenizer changed", "The network became faster", "The model got smaller"]),
        ("What does speculative decoding use to speed up generation?",
         "A small draft model whose proposed tokens the large model verifies",
         ["A larger batch of prompts", "A lower-precision tokenizer", "A longer context window",
          "Fewer attention heads at inference time"]),
        ("Which HTTP status code tells a client that it is being rate limited?", "429", ["200", "301", "404", "503"]),
        ("What does tensor parallelism do?", "Splits each layer's matrices across several GPUs",
         ["Runs independent copies of the model on several GPUs", "Keeps the KV cache in CPU memory",
          "Trains the model on several datasets", "Shares cached prompts between users"]),
    ],
    "statistics": [
        ("An accuracy is measured on 400 items. Roughly how wide is its 95% confidence interval on 1,600 items "
         "instead?", "About half as wide",
         ["About a quarter as wide", "As wide", "Twice as wide", "About a sixteenth as wide"]),
        ("Which test compares two models on the same items using only the items where exactly one of them is right?",
         "McNemar's test", ["Welch's t-test", "The Shapiro-Wilk test", "Levene's test", "The Kolmogorov-Smirnov test"]),
        ("What is the median of 3, 9, 4, 7 and 5?", "5", ["4", "5.6", "7", "9"]),
        ("Why is the Wilson interval preferred to the normal (Wald) interval for an accuracy near 0% or 100%?",
         "It stays between 0 and 1 and keeps close to its stated coverage",
         ["It is always narrower", "It needs no sample size", "It ignores the number of items",
          "It assumes the accuracy is 50%"]),
        ("The 95th percentile latency of a run is 800 ms. What does that mean?",
         "95% of the requests took 800 ms or less",
         ["The mean latency is 800 ms", "5% of the requests took 800 ms or less", "The slowest request took 800 ms",
          "95% of the requests took more than 800 ms"]),
        ("A model answers 80 of 100 questions right. What is the standard error of its accuracy, to two decimals?",
         "0.04", ["0.16", "0.40", "0.08", "0.02"]),
        ("Two runs of the same model on 200 items differ by half a point of accuracy. What is the most reasonable "
         "conclusion?", "The difference is within the noise of 200 items",
         ["The runs used different models", "The second run is clearly better", "The benchmark is broken",
          "The server was overloaded"]),
        ("What does a stratified subset of a benchmark keep?", "Each subject's share of the items",
         ["Only the hardest items", "The items in file order", "A single subject", "The items with the longest questions"]),
        ("What is the mean of 2, 4, 6 and 8?", "5", ["4", "6", "20", "4.5"]),
        ("Which of these measures the spread of a set of numbers?", "The standard deviation",
         ["The median", "The mode", "The mean", "The sample size"]),
    ],
    "hardware": [
        ("About how much memory do the weights of an 8-billion-parameter model take at 16 bits per parameter?",
         "About 16 GB", ["About 8 GB", "About 4 GB", "About 32 GB", "About 64 GB"]),
        ("About how much memory do 8 billion parameters take at 4 bits each?", "About 4 GB",
         ["About 8 GB", "About 16 GB", "About 1 GB", "About 32 GB"]),
        ("Why is generating one token at a time usually limited by memory bandwidth rather than by compute?",
         "Each step reads all the weights from memory for little arithmetic per byte",
         ["The tokenizer runs on the CPU", "The network is slower than the GPU", "The compute units sleep during prefill",
          "Decoding uses no matrix multiplications"]),
        ("What does AWQ do to a model?", "Quantizes its weights to low precision, protecting the most important ones",
         ["Adds layers to it", "Distils it into a smaller model", "Caches its activations on disk",
          "Turns it into a mixture of experts"]),
        ("Which link connects the GPUs inside one server at the highest bandwidth?", "NVLink",
         ["Gigabit Ethernet", "USB", "SATA", "Wi-Fi"]),
        ("A GPU has 80 GB of memory and the model weights take 16 GB. What mostly limits how many requests run at once?",
         "The memory left for the KV cache",
         ["The number of CPU cores", "The size of the tokenizer", "The speed of the disk", "The power supply"]),
        ("What does FP8 refer to?", "An 8-bit floating-point number format",
         ["An 8-core processor", "A fixed 8-token prefix", "Eight GPUs in one server", "A model with 8 layers"]),
        ("Where are the model weights kept on a GPU during inference?", "In its high-bandwidth memory (HBM)",
         ["In its L1 cache only", "On the PCIe bus", "In the CPU's registers", "On the network card"]),
        ("While decoding is limited by memory bandwidth, what does doubling the batch size typically do?",
         "Each token takes a little longer while total throughput nearly doubles",
         ["Latency and throughput both halve", "Nothing changes", "Latency doubles and throughput halves",
          "Throughput drops to zero"]),
        ("What does the prefill phase compute?", "The attention states of the whole prompt in one pass",
         ["Only the next token", "The tokenizer's vocabulary", "The KV cache of other users",
          "The gradients of the prompt"]),
    ],
}  # fmt: skip


def knowledge_jsonl() -> bytes:
    """MMLU-Pro JSON Lines (question_id, question, options, answer, answer_index, cot_content, category, src);
    the right option of question k goes to letter k mod its options' count, so every letter is right sometimes."""
    lines, number = [], 0
    for category, questions in QUESTIONS.items():
        for question, right, wrong in questions:
            position = number % (len(wrong) + 1)
            options = [*wrong[:position], right, *wrong[position:]]
            lines.append(json.dumps({
                "question_id": number, "question": question, "options": options, "answer": LETTERS[position],
                "answer_index": position, "cot_content": "", "category": category, "src": "llmbench-demo",
            }))  # fmt: skip
            number += 1
    return ("\n".join(lines) + "\n").encode()


# --- loading ----------------------------------------------------------------------------------------------------


def _suite(team: Team, user: AbstractBaseUser, name: str, file_name: str, data: bytes, kind: str) -> BenchmarkSuite:
    """The demo suite `name`: its latest version when the file is unchanged, else a fresh import (old versions
    without runs go)."""
    latest = BenchmarkSuite.objects.filter(team=team, name=name).order_by("-version").first()
    if latest is not None and latest.sha256 == hashlib.sha256(data).hexdigest():
        return latest
    for old in BenchmarkSuite.objects.filter(team=team, name=name):
        if not old.runs.exists():
            suite_delete(suite=old)
    return suite_import(team=team, user=user, name=name, files=[(file_name, data)], kind=kind,
                        description="Written for llmbench's demo (no third-party questions).")  # fmt: skip


def write_answer_key(suite: BenchmarkSuite, path: Path) -> Path:
    """The suite's answer key as JSON Lines at `path`, replaced atomically (the simulator reloads a changed file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        for row in suite_answer_key(suite):
            handle.write(json.dumps(row) + "\n")
    os.replace(partial, path)
    return path


def _endpoint(team: Team, quantization: str, name: str, accuracy: float, prices: tuple[float, float],
              keys: list[Path]) -> ProviderEndpoint:  # fmt: skip
    query = "&".join(f"answer_key={quote(str(key), safe='/')}" for key in keys)
    url = (f"sim://{name}?zero_latency=1&{query}&answer_accuracy={accuracy:g}&answer_style=auto"
           f"&no_answer_rate={NO_ANSWER_RATE:g}&answer_seed={ANSWER_SEED}")  # fmt: skip
    endpoint, _ = ProviderEndpoint.objects.update_or_create(
        team=team, name=f"Simulator: Llama 3.1 8B {quantization}",
        defaults={"kind": "sim", "base_url": url, "model_names": [SERVED_AS], "max_concurrency": 16,
                  "price_input_per_1m_usd": prices[0], "price_output_per_1m_usd": prices[1]},
    )  # fmt: skip
    return endpoint


def _run_to_the_end(run: BenchmarkRun) -> str:
    """Start the run and run its chunks here, one after the other (each hands its lease to the next)."""
    benchmark_run_start(run=run)
    status, lease = "", ""
    for _ in range(MAX_CHUNKS):
        status = run_benchmark(run.pk, lease)
        if status in FINISHED:
            break
        lease = BenchmarkRun.objects.filter(pk=run.pk).values_list("lease", flat=True).first() or ""
    return status


def load(team: Team, user: AbstractBaseUser) -> dict:
    """The demo suites, their answer keys, two simulated quantizations and one finished run per suite; returns
    counts. Safe to run again: the demo runs (and their measured scores) are replaced, unchanged suites reused."""
    for run in BenchmarkRun.objects.filter(
        team=team, name__startswith="Demo:", suite__name__in=[ARITHMETIC, KNOWLEDGE]
    ):
        benchmark_run_delete(run=run)
    suites = [
        _suite(team, user, ARITHMETIC, "demo-serving-arithmetic.jsonl", arithmetic_jsonl(), "gsm8k"),
        _suite(team, user, KNOWLEDGE, "demo-serving-knowledge.jsonl", knowledge_jsonl(), "mmlu_pro"),
    ]
    keys = [write_answer_key(suite, answer_key_dir() / f"team{team.pk}-{suite.kind}.jsonl") for suite in suites]
    targets = []
    for quantization, name, accuracy, price_in, price_out in QUANTIZATIONS:
        variant, _ = ModelVariant.objects.get_or_create(
            team=team,
            model_name=MODEL,
            quantization=quantization,
            defaults={"family": "Llama 3.1", "parameters_b": 8.0},
        )
        endpoint = _endpoint(team, quantization, name, accuracy, (price_in, price_out), keys)
        targets.append(TargetSpec(endpoint=endpoint, model=SERVED_AS, variant=variant))
    counts = {"suites": len(suites), "items": 0, "runs": 0, "answers": 0, "measured_scores": 0}
    for suite in suites:
        run = benchmark_run_create(
            team=team, user=user, suite=suite, targets=targets, name=f"Demo: {suite.name.removeprefix('Demo: ')}, "
            "Llama 3.1 8B BF16 vs AWQ", shots=0, concurrency=16,
        )  # fmt: skip
        counts["runs"] += _run_to_the_end(run) == "completed"
        counts["items"] += suite.item_count
        counts["answers"] += run.answers.count()
        counts["measured_scores"] += Score.objects.filter(
            team=team, origin=Score.Origin.MEASURED, provenance__run_id=run.pk
        ).count()
    return counts
