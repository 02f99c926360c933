"""The score file parsers: every layout, and every bad row named with its field."""

import json

import pytest

from apps.scores.importers import ScoreFileError, parse_lm_eval_json, parse_scores_csv


def errors_of(text: str, **kwargs) -> list[tuple]:
    with pytest.raises(ScoreFileError) as caught:
        parse_scores_csv(text, **kwargs)
    return [(e.row, e.field) for e in caught.value.errors]


class TestLongCsv:
    def test_it_reads_every_column(self):
        text = (
            "model,quantization,benchmark,score,n_shot,stderr,source,evaluated_at\n"
            "org/m,awq,MMLU,0.65,5,0.004,paper,2026-01-02\n"
        )
        layout, rows = parse_scores_csv(text)
        assert layout == "long"
        row = rows[0]
        assert (row.row, row.model_name, row.quantization, row.benchmark, row.value) == (
            2,
            "org/m",
            "AWQ",
            "MMLU",
            0.65,
        )
        assert (row.n_shot, row.stderr, row.source, str(row.evaluated_at)) == (5, 0.004, "paper", "2026-01-02")

    def test_header_names_are_case_insensitive_and_can_be_mapped(self):
        text = "Model Name,Quant,Benchmark,SCORE\norg/m,BF16,GSM8K,71\n"
        _, rows = parse_scores_csv(text, column_map={"model name": "model", "Quant": "quantization"})
        assert rows[0].model_name == "org/m" and rows[0].value == 71.0

    def test_it_names_every_bad_row_and_field(self):
        text = (
            "model,quantization,benchmark,score,n_shot,evaluated_at\n"
            "org/m,BF16,MMLU,abc,5,\n"  # 2: not a number
            ",BF16,MMLU,50,,\n"  # 3: empty model
            "org/m,BF16,GSM8K,NaN,,\n"  # 4: NaN
            "org/m,BF16,ARC,inf,,\n"  # 5: infinite
            "org/m,,ARC,50,,\n"  # 6: empty quantization
            "org/m,BF16,HellaSwag,50,five,\n"  # 7: n_shot
            "org/m,BF16,IFEval,50,,yesterday\n"  # 8: date
            "org/m,BF16,IFEval,50,,,extra\n"  # 9: too many cells
            "org/m,BF16,TruthfulQA,,,\n"  # 10: empty score
        )
        assert errors_of(text) == [
            (2, "score"), (3, "model"), (4, "score"), (5, "score"), (6, "quantization"),
            (7, "n_shot"), (8, "evaluated_at"), (9, "row"), (10, "score"),
        ]  # fmt: skip

    def test_an_unknown_column_rejects_the_file(self):
        assert errors_of("model,quantization,benchmark,score,colour\nm,BF16,MMLU,1,red\n") == [(1, "colour")]

    def test_a_missing_required_column_is_named(self):
        assert errors_of("model,benchmark,score\nm,MMLU,1\n") == [(1, "quantization")]

    def test_a_repeated_score_names_both_rows(self):
        with pytest.raises(ScoreFileError) as caught:
            parse_scores_csv("model,quantization,benchmark,score\nm,BF16,MMLU,1\nm,bf16,mmlu,2\n")
        assert caught.value.errors[0].row == 3 and "row 2" in caught.value.errors[0].message

    def test_blank_lines_are_skipped_and_a_bom_is_fine(self):
        from apps.scores.importers import decode_upload

        text = decode_upload("\ufeffmodel,quantization,benchmark,score\n\nm,BF16,MMLU,1\n".encode())
        assert len(parse_scores_csv(text)[1]) == 1

    def test_an_empty_file_or_header_only_is_rejected(self):
        assert errors_of("") == [(1, "header")]
        assert errors_of("model,quantization,benchmark,score\n") == [("file", "rows")]

    def test_a_non_utf8_file_is_rejected(self):
        from apps.scores.importers import decode_upload

        with pytest.raises(ScoreFileError, match="UTF-8"):
            decode_upload(b"model\xff\xfe")


class TestWideCsv:
    def test_it_reads_one_score_per_benchmark_column_and_skips_empty_cells(self):
        text = "model,quantization,family,MMLU,GSM8K\norg/a,BF16,Fam,65.5,80\norg/b,AWQ,,64,\n"
        layout, rows = parse_scores_csv(text)
        assert layout == "wide"
        assert [(r.model_name, r.benchmark, r.value, r.field) for r in rows] == [
            ("org/a", "MMLU", 65.5, "MMLU"), ("org/a", "GSM8K", 80.0, "GSM8K"), ("org/b", "MMLU", 64.0, "MMLU"),
        ]  # fmt: skip
        assert rows[0].family == "Fam"

    def test_a_bad_cell_names_its_benchmark_column(self):
        assert errors_of("model,quantization,MMLU,GSM8K\nm,BF16,65,x\nm2,BF16,nan,1\n") == [(2, "GSM8K"), (3, "MMLU")]

    def test_a_file_without_benchmark_columns_is_rejected(self):
        assert errors_of("model,quantization\nm,BF16\n") == [(1, "header")]

    def test_a_duplicated_column_is_rejected(self):
        assert errors_of("model,quantization,MMLU,mmlu\nm,BF16,1,2\n") == [(1, "mmlu")]


def lm_eval_doc(**overrides) -> dict:
    """A results file in lm-evaluation-harness 0.4 shape (groups, subtasks, N/A stderr)."""
    doc = {
        "results": {
            "mmlu": {"acc,none": 0.6512, "acc_stderr,none": 0.0038, "alias": "mmlu"},
            "mmlu_humanities": {"acc,none": 0.6, "acc_stderr,none": 0.007, "alias": " - humanities"},
            "mmlu_formal_logic": {"acc,none": 0.4, "acc_stderr,none": 0.04, "alias": "  - formal_logic"},
            "gsm8k": {
                "exact_match,strict-match": 0.7551,
                "exact_match_stderr,strict-match": 0.0118,
                "exact_match,flexible-extract": 0.7612,
                "exact_match_stderr,flexible-extract": 0.0117,
                "alias": "gsm8k",
            },
            "hellaswag": {"acc,none": 0.6, "acc_stderr,none": "N/A", "acc_norm,none": 0.79, "alias": "hellaswag"},
            "my_task": {"bleu,none": 0.31, "bleu_stderr,none": 0.01, "alias": "my_task"},
        },
        "group_subtasks": {
            "mmlu_humanities": ["mmlu_formal_logic"],
            "mmlu": ["mmlu_humanities"],
            "gsm8k": [],
            "hellaswag": [],
            "my_task": [],
        },
        "n-shot": {"gsm8k": 5, "hellaswag": 10, "mmlu_formal_logic": 5},
        "config": {"model": "hf", "model_args": "pretrained=meta-llama/Llama-3.1-8B-Instruct,dtype=bfloat16"},
        "date": 1767225600.0,
    }
    doc.update(overrides)
    return doc


class TestLmEvalJson:
    def test_it_reads_top_level_tasks_with_their_metric_stderr_and_shots(self):
        rows = parse_lm_eval_json(json.dumps(lm_eval_doc()), quantization="bf16")
        by_name = {r.benchmark: r for r in rows}
        assert set(by_name) == {"MMLU", "GSM8K", "HellaSwag", "my_task"}  # subtasks of mmlu skipped
        assert by_name["MMLU"].value == 0.6512 and by_name["MMLU"].stderr == 0.0038
        assert by_name["GSM8K"].value == 0.7551 and by_name["GSM8K"].field == "exact_match,strict-match"
        assert by_name["GSM8K"].n_shot == 5
        assert by_name["HellaSwag"].stderr is None  # "N/A"
        assert by_name["my_task"].value == 0.31 and by_name["my_task"].source.endswith("bleu,none")
        assert {r.model_name for r in rows} == {"meta-llama/Llama-3.1-8B-Instruct"}
        assert {r.quantization for r in rows} == {"BF16"}
        assert str(rows[0].evaluated_at) == "2026-01-01"

    def test_the_upload_names_the_model_over_the_file(self):
        rows = parse_lm_eval_json(json.dumps(lm_eval_doc()), model_name="mine", quantization="AWQ")
        assert {r.model_name for r in rows} == {"mine"}

    def test_it_needs_a_quantization_and_a_model(self):
        doc = lm_eval_doc(config={})
        with pytest.raises(ScoreFileError) as caught:
            parse_lm_eval_json(json.dumps(doc))
        assert [(e.row, e.field) for e in caught.value.errors] == [("upload", "model"), ("upload", "quantization")]

    def test_a_nan_metric_is_named(self):
        doc = lm_eval_doc()
        doc["results"]["gsm8k"]["exact_match,strict-match"] = float("nan")
        with pytest.raises(ScoreFileError) as caught:
            parse_lm_eval_json(json.dumps(doc), quantization="BF16")  # json.dumps writes NaN, as lm-eval does
        assert [(e.row, e.field) for e in caught.value.errors] == [("gsm8k", "exact_match,strict-match")]

    @pytest.mark.parametrize("text", ["{not json", "[]", '{"results": 3}'])
    def test_it_rejects_what_is_not_a_results_file(self, text):
        with pytest.raises(ScoreFileError):
            parse_lm_eval_json(text, model_name="m", quantization="BF16")
