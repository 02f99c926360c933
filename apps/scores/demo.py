"""Demo model variants and plausible (generated, not measured) benchmark scores."""

import csv
import io

import numpy as np

from apps.accounts.models import Team
from apps.scores.services import ImportSummary, scores_import

# model → (family, parameters in billions, quantizations, base score per benchmark in percent)
BENCHMARKS = ["MMLU", "MMLU-Pro", "GSM8K", "HellaSwag", "ARC-Challenge", "TruthfulQA", "IFEval"]
MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": (
        "Llama 3.1",
        8.0,
        ["BF16", "FP8", "AWQ", "GPTQ"],
        [69.4, 48.3, 84.5, 80.1, 83.4, 54.0, 80.4],
    ),
    "meta-llama/Llama-3.1-70B-Instruct": (
        "Llama 3.1",
        70.6,
        ["BF16", "FP8", "AWQ"],
        [83.6, 66.4, 95.1, 87.3, 94.8, 59.8, 87.5],
    ),
    "Qwen/Qwen2.5-7B-Instruct": (
        "Qwen 2.5",
        7.6,
        ["BF16", "AWQ", "Q4_K_M"],
        [74.2, 56.3, 91.6, 80.2, 85.4, 62.0, 71.2],
    ),
    "mistralai/Mistral-7B-Instruct-v0.3": (
        "Mistral",
        7.2,
        ["FP16", "Q4_K_M"],
        [62.1, 30.9, 52.2, 84.8, 78.5, 59.7, 54.6],
    ),
    "microsoft/Phi-3.5-mini-instruct": ("Phi 3.5", 3.8, ["BF16"], [69.0, 47.4, 86.2, 69.4, 84.6, 64.0, 59.1]),
}
# Typical accuracy cost of each quantization, in points (a rough, generated figure).
QUANT_COST = {"BF16": 0.0, "FP16": 0.0, "FP8": 0.3, "AWQ": 0.9, "GPTQ": 1.3, "Q4_K_M": 1.6}
DEMO_SOURCE = "demo data (generated)"  # migration 0002 marks scores with this source as simulated


def demo_scores_csv() -> str:
    """The demo scores as a long CSV, the same on every run (fixed seed)."""
    rng = np.random.default_rng(20261123)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["model", "quantization", "benchmark", "score", "n_shot", "stderr", "source", "family", "parameters_b"]
    )
    for model, (family, params, quants, base) in MODELS.items():
        for quant in quants:
            for benchmark, score in zip(BENCHMARKS, base, strict=True):
                noise = 0.0 if QUANT_COST[quant] == 0 else float(rng.normal(0, 0.4))
                value = round(min(100.0, max(0.0, score - QUANT_COST[quant] + noise)), 2)
                n_shot = {"MMLU": 5, "MMLU-Pro": 5, "GSM8K": 8, "ARC-Challenge": 25, "HellaSwag": 10}.get(benchmark, 0)
                writer.writerow([model, quant, benchmark, value, n_shot, 0.4, DEMO_SOURCE, family, params])
    return out.getvalue()


def demo_scores_load(*, team: Team) -> ImportSummary:
    """Import the demo scores into `team` as simulated scores (re-running updates the same rows)."""
    return scores_import(team=team, content=demo_scores_csv().encode(), scale="percent", simulated=True)
