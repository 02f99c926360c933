"""The workload spec: every problem named by its path, defaults filled in, equal specs hashing equal."""

import pytest

from apps.workloads.engine.spec import is_multi_turn, normalize, spec_sha256, validate_spec

SYNTHETIC = {
    "source": "synthetic",
    "input_tokens": {"dist": "fixed", "value": 100},
    "output_tokens": {"dist": "uniform", "min": 10, "max": 20},
}


def test_a_valid_spec_normalizes_with_every_default_and_a_stable_hash():
    assert validate_spec(SYNTHETIC) == []
    spec = normalize(SYNTHETIC)
    assert spec["format"] == "llmbench.workload/1" and spec["seed"] == 0 and spec["length_basis"] == "content"
    assert spec["request"] == {
        "endpoint": "chat", "pin_output": "ignore_eos", "stop": None, "response_format": None, "top_k": None,
        "min_p": None, "repetition_penalty": None,
    }  # fmt: skip
    assert spec_sha256(spec) == spec_sha256(normalize({**SYNTHETIC, "seed": 0, "request": {"endpoint": "chat"}}))
    assert spec_sha256(spec) != spec_sha256(normalize({**SYNTHETIC, "seed": 1}))
    assert validate_spec(spec) == []  # a stored (normalized) spec validates again
    assert not is_multi_turn(spec)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, "bogus: unknown setting."),
        ({"source": "stream"}, "source: must be synthetic, dataset or trace."),
        ({"trace": {}}, "trace: does not apply to a synthetic workload."),
        ({"input_tokens": {"dist": "cubic"}}, "input_tokens"),
        ({"seed": -1}, "seed: must be an integer"),
        ({"length_basis": "server"}, "length_basis: only 'content' is supported"),
        ({"sessions": {"think_time_s": {"dist": "fixed", "value": 1}}}, "sessions.turns: is required"),
        ({"sessions": {"turns": {"dist": "fixed", "value": 2}, "think_time_s": {"dist": "fixed", "value": -1}}},
         "sessions.think_time_s.value: must be a number ≥ 0."),
        ({"sessions": {"turns": {"dist": "fixed", "value": 2}, "mode": "user_centric"}}, "sessions.users"),
        ({"sessions": {"turns": {"dist": "fixed", "value": 2}, "users": 4}},
         "sessions.users: only applies to user_centric mode."),
        ({"prefix": {"buckets": [{"weight": 1, "count": 2, "tokens": 50}], "placement": "middle"}},
         "prefix.placement: must be system or user."),
        ({"request": {"stop": ["a", "b", "c", "d", "e"]}}, "request.stop"),
        ({"request": {"response_format": {"type": "json_schema"}}}, "request.response_format.json_schema"),
        ({"request": {"min_p": 1.5}}, "request.min_p"),
        ({"request": {"endpoint": "embeddings"}}, "request.endpoint: must be chat or completions."),
    ],
)  # fmt: skip
def test_each_problem_is_named_by_its_path(change, message):
    errors = validate_spec({**SYNTHETIC, **change})
    assert any(e.startswith(message) for e in errors), errors


def test_dataset_and_trace_blocks_are_checked():
    assert validate_spec({"source": "dataset", "dataset": {"output_from": "distribution"}}) == [
        "output_tokens: is required when dataset.output_from is distribution."
    ]
    assert validate_spec({"source": "dataset", "dataset": {"min_input_tokens": 50, "max_input_tokens": 10}}) == [
        "dataset.min_input_tokens: is above max_input_tokens."
    ]
    assert validate_spec({"source": "trace", "trace": {"speedup": 0}}) == [
        "trace.speedup: must be a number from 0.01 to 1000."
    ]
    assert validate_spec({"source": "trace", "trace": {"window_start_s": 5, "window_end_s": 5}}) == [
        "trace.window_end_s: must be a number of seconds after window_start_s."
    ]
    assert validate_spec({"source": "trace", "input_tokens": {"dist": "fixed", "value": 1}}) == [
        "input_tokens: does not apply to a trace workload."
    ]
    assert is_multi_turn(normalize({"source": "dataset", "dataset": {"multi_turn": True}}))
    assert validate_spec([1]) == ["(spec): must be a JSON object."]
