"""Demo workloads: a chat workload with realistic lengths, a multi-turn one with shared system prompts, and a
small generated conversation dataset (ShareGPT layout) sampled by a third. Generated here, not copied."""

import orjson

from apps.accounts.models import Team
from apps.workloads.models import Workload, WorkloadDataset
from apps.workloads.services import dataset_upload, workload_create

TOPICS = ["tides", "compilers", "bread", "glaciers", "chess openings", "bridges", "vaccines", "jazz", "volcanoes"]

CHAT = {
    "source": "synthetic", "seed": 1,
    "input_tokens": {"dist": "lognormal", "average": 600, "median_ratio": 0.7, "max": 4000},
    "output_tokens": {"dist": "uniform", "min": 64, "max": 256},
}  # fmt: skip
AGENT = {
    "source": "synthetic", "seed": 2,
    "input_tokens": {"dist": "normal", "mean": 120, "stdev": 40, "min": 20},
    "output_tokens": {"dist": "fixed", "value": 96},
    "prefix": {"buckets": [{"weight": 3, "count": 2, "tokens": 800}, {"weight": 1, "count": 4, "tokens": 300}]},
    "sessions": {"turns": {"dist": "uniform", "min": 2, "max": 5},
                 "think_time_s": {"dist": "normal", "mean": 2, "stdev": 1, "min": 0}},
}  # fmt: skip
DATASET = {"source": "dataset", "seed": 3, "dataset": {"sample": 200, "multi_turn": True, "max_turns": 4}}


def demo_conversations(n: int = 300) -> bytes:
    """N conversations of 1 to 3 exchanges about a few topics, in the ShareGPT layout."""
    items = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        turns = [{"from": "system", "value": "You are a patient teacher."}] if i % 4 == 0 else []
        for k in range(1 + i % 3):
            question = f"Explain {topic} to a student in year {5 + (i + k) % 8}, part {k + 1}." + " Be concrete." * (
                i % 5
            )
            turns.append({"from": "human", "value": question})
            turns.append({"from": "gpt", "value": f"Here is how {topic} works. " * (3 + (i * 7 + k) % 20)})
        items.append({"id": f"demo-{i}", "conversations": turns})
    return orjson.dumps(items)


def demo_workloads_load(*, team: Team, user) -> int:
    """The demo's workloads (kept when they exist); returns how many the team has."""
    if not WorkloadDataset.objects.filter(team=team, name="Demo conversations").exists():
        content = demo_conversations()
        dataset_upload(team=team, user=user, name="Demo conversations", content=content, filename="demo.json")
    dataset = WorkloadDataset.objects.get(team=team, name="Demo conversations")
    for name, spec, extra in (
        ("Chat, realistic lengths", CHAT, {}),
        ("Agent sessions with shared system prompts", AGENT, {}),
        ("Conversations from a dataset", DATASET, {"dataset": dataset}),
    ):
        if not Workload.objects.filter(team=team, name=name).exists():
            workload_create(team=team, user=user, name=name, spec=spec, **extra)
    return Workload.objects.filter(team=team).count()
