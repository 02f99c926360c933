"""The capacity answer (issue 14): curves, the Pareto frontier and cost at the SLO, on the page, in the API and in
every file with the same figures; roles, team scoping, simulated results, bad input and query counts."""

import csv
import io
import itertools
import random
import re
from datetime import timedelta

import openpyxl
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from apps.analytics import decision
from apps.analytics.presentation import rounded
from apps.analytics.stats import pareto_front
from apps.capacity.models import CapacitySearch
from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun, RunSummary
from apps.providers.models import ProviderEndpoint
from apps.scores.models import Benchmark, ModelVariant, Score
from apps.workloads.models import Workload, WorkloadVersion
from llmbench.humanize import number_text
from tests.analytics.test_analytics_exports import _Table

pytestmark = pytest.mark.django_db
API = "/api/v1/analytics/decision/"
SLO = {"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 500.0}], "max_error_rate": 0.01,
       "attainment": None, "confidence": 0.95}  # fmt: skip
OTHER_SLO = {**SLO, "objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 200.0}]}


# --- data ----------------------------------------------------------------------------------------------------


def _run(team, variant, hardware, deployment, *, rps, tps, ttft_p95, e2e_p95, tpot_p50, concurrency=8,
         simulated=False, name="", workload_version=None):  # fmt: skip
    run = PerformanceRun.objects.create(
        team=team, variant=variant, hardware=hardware, deployment=deployment, concurrency=concurrency, name=name,
        is_simulated=simulated, input_tokens_target=256, output_tokens_target=128, workload_version=workload_version,
    )  # fmt: skip
    RunSummary.objects.create(
        run=run, source="reported", request_count=100, error_count=0, request_throughput_rps=rps,
        output_token_throughput_tps=tps,
        metrics={"ttft_ms": {"p50": ttft_p95 / 2, "p95": ttft_p95}, "e2e_ms": {"p95": e2e_p95},
                 "tpot_ms": {"p50": tpot_p50, "mean": tpot_p50}},
    )  # fmt: skip
    return run


def _search(team, endpoint, variant, hardware, deployment, *, cost, slo=SLO, status="completed", simulated=False,
            age_days=0, name="search"):  # fmt: skip
    search = CapacitySearch.objects.create(
        team=team, name=name, endpoint=endpoint, model=variant.model_name, variant=variant, hardware=hardware,
        deployment=deployment, slo=slo, status=status, capacity=8.0, capacity_low=8.0, capacity_high=9.0,
        capacity_rps=8.0, output_tps=1000.0, output_tps_per_gpu=1000.0 / hardware.accelerator_count,
        output_tps_per_user=31.25, cost_per_1m_output_usd=cost, is_simulated=simulated,
        result={"capacity": 8.0}, finished_at=timezone.now() - timedelta(days=age_days),
    )  # fmt: skip
    return search


class Data:
    """Two deployments whose runs put five points on the frontier (with two ties) and two off it; a simulated
    run and search; capacity searches of which one is superseded, one running and one without a cost."""

    def __init__(self, team, *, model_prefix="org/", names=("alpha-8b", "beta-70b"), hardware_name="H100"):
        self.team = team
        self.a = ModelVariant.objects.create(team=team, model_name=f"{model_prefix}{names[0]}", quantization="BF16")
        self.b = ModelVariant.objects.create(team=team, model_name=f"{model_prefix}{names[1]}", quantization="AWQ")
        self.one = HardwareProfile.objects.create(team=team, name=f"1x {hardware_name}", accelerator_count=1,
                                                  hourly_cost_usd=2.0)  # fmt: skip
        self.eight = HardwareProfile.objects.create(team=team, name=f"8x {hardware_name}", accelerator_count=8,
                                                    hourly_cost_usd=20.0)  # fmt: skip
        self.vllm = Deployment.objects.create(team=team, name="vllm tp1", engine="vllm")
        self.sglang = Deployment.objects.create(team=team, name="sglang tp8", engine="sglang")
        self.a_runs = [
            _run(team, self.a, self.one, self.vllm, rps=r, tps=t, ttft_p95=ttft, e2e_p95=e2e, tpot_p50=tpot,
                 concurrency=c, name=f"alpha c{c}")
            for r, t, ttft, e2e, tpot, c in ((3.0, 300.0, 150.0, 900.0, 20.0, 4), (1.0, 100.0, 100.0, 800.0, 10.0, 1),
                                             (10.0, 450.0, 1200.0, 4000.0, 50.0, 64),
                                             (8.0, 500.0, 400.0, 2500.0, 40.0, 16))
        ]  # fmt: skip
        self.b_runs = [
            _run(team, self.b, self.eight, self.sglang, rps=r, tps=t, ttft_p95=ttft, e2e_p95=e2e, tpot_p50=tpot,
                 concurrency=c, name=f"beta c{c}")
            for r, t, ttft, e2e, tpot, c in ((2.0, 800.0, 90.0, 700.0, 10.0, 1), (6.0, 2000.0, 300.0, 1500.0, 25.0, 4),
                                             (12.0, 4000.0, 700.0, 3000.0, 40.0, 16))
        ]  # fmt: skip
        self.simulated_run = _run(team, self.a, self.one, self.vllm, rps=50.0, tps=9000.0, ttft_p95=50.0, e2e_p95=90.0,
                                  tpot_p50=1.0, simulated=True, name="simulated run")  # fmt: skip
        endpoint = ProviderEndpoint.objects.create(team=team, name=f"{names[0]} endpoint", kind="sim")
        self.old = _search(team, endpoint, self.a, self.one, self.vllm, cost=1.5, age_days=3, name="alpha old")
        self.latest = _search(team, endpoint, self.a, self.one, self.vllm, cost=1.25, age_days=1, name="alpha latest")
        self.strict = _search(team, endpoint, self.a, self.one, self.vllm, cost=2.5, slo=OTHER_SLO, name="alpha strict")
        self.beta = _search(team, endpoint, self.b, self.eight, self.sglang, cost=3.125, name="beta")
        self.uncosted = _search(team, endpoint, self.b, self.one, self.vllm, cost=None, name="beta unpriced")
        _search(team, endpoint, self.a, self.one, self.sglang, cost=0.01, simulated=True, name="simulated search")
        _search(team, endpoint, self.a, self.eight, self.vllm, cost=0.02, status="running", name="running search")
        benchmark = Benchmark.objects.create(team=team, name=f"MMLU {names[0]}")
        Score.objects.create(team=team, variant=self.a, benchmark=benchmark, value_pct=72.5)


@pytest.fixture
def data(team):
    return Data(team)


@pytest.fixture
def other_data(other_team):
    """Another team's runs and searches, with names no test of our team may ever see."""
    return Data(other_team, model_prefix="theirs/", names=("other-team-model", "other-team-big"),
                hardware_name="OTHERGPU")  # fmt: skip


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(_body(response).decode(), newline="")))


def _sheets(response) -> dict[str, list[tuple]]:
    book = openpyxl.load_workbook(io.BytesIO(_body(response)))
    return {name: list(book[name].iter_rows(values_only=True)) for name in book.sheetnames}


def _page_table(client, kind, table, params=None) -> list[list[str]]:
    response = client.get(reverse("analytics:decision", args=[kind]), params or {})
    assert response.status_code == 200
    parser = _Table(f"table-{table}")
    parser.feed(response.content.decode())
    return parser.rows


# --- Pareto maths --------------------------------------------------------------------------------------------


def test_pareto_frontier_of_hand_made_points_with_ties():
    """Equal points both stay; a point equal on one axis and lower on the other is dominated."""
    points = [(100, 100), (100, 100), (50, 300), (25, 500), (25, 500), (20, 450), (40, 250), (100, 90), (25, 400)]
    assert decision.pareto_frontier(points) == [True, True, True, True, True, False, False, False, False]


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([], []),
        ([(1.0, 1.0)], [True]),
        ([(1, 2), (2, 1)], [True, True]),  # neither beats the other on both
        ([(1, 1), (1, 2)], [False, True]),  # same x, higher y
        ([(1, 1), (2, 1)], [False, True]),  # same y, higher x
        ([(3, 3), (3, 3), (3, 3)], [True, True, True]),
        ([(0, 5), (5, 0), (2, 2), (1, 1)], [True, True, True, False]),
    ],
)
def test_pareto_frontier_edge_cases(points, front):
    assert decision.pareto_frontier(points) == front


def test_pareto_frontier_agrees_with_the_pairwise_definition_on_many_ties():
    """Against the leaderboard's O(n²) definition, on integer points where ties are common."""
    rng = random.Random(14)
    for size in (2, 5, 30, 120):
        points = [(rng.randint(0, 6), rng.randint(0, 6)) for _ in range(size)]
        assert decision.pareto_frontier(points) == pareto_front(points, (True, True))


# --- selectors -----------------------------------------------------------------------------------------------


def test_curves_join_each_deployments_runs_in_order_of_throughput(data):
    curves = decision.decision_curves(data.team, {"slo_ms": "500", "include_simulated": "0"})
    alpha = next(c for c in curves.curves if "alpha-8b" in c.deployment)
    assert [p.throughput for p in alpha.points] == [1.0, 3.0, 8.0, 10.0]
    assert [p.latency_ms for p in alpha.points] == [100.0, 150.0, 400.0, 1200.0]
    assert [p.within_slo for p in alpha.points] == [True, True, True, False]
    assert alpha.best_throughput_within_slo == 8.0
    assert alpha.deployment == "alpha-8b BF16 · 1x H100 · vllm tp1 (vllm)"
    assert curves.slo == decision.SloLine(500.0, "entered")
    assert "simulated run" not in {p.run for c in curves.curves for p in c.points}
    assert curves.left_out.startswith("1 simulated run ")


def test_curves_of_output_throughput_and_e2e_with_the_slo_of_a_capacity_search(data):
    params = {"x": "output_tps", "y": "ttft_p95_ms", "search": str(data.latest.pk)}
    curves = decision.decision_curves(data.team, params)
    assert curves.slo.max_ms == 500.0 and curves.slo.search_id == data.latest.pk
    assert "p95 TTFT ≤ 500 ms" in curves.slo.description
    beta = next(c for c in curves.curves if "beta-70b" in c.deployment)
    assert [p.throughput for p in beta.points] == [800.0, 2000.0, 4000.0]
    e2e = decision.decision_curves(data.team, {"y": "e2e_p95_ms"})
    assert [p.latency_ms for p in e2e.curves[0].points][:2] == [800.0, 900.0] and e2e.slo is None


def test_curves_include_simulated_runs_only_when_asked(data):
    curves = decision.decision_curves(data.team, {"include_simulated": "1"})
    simulated = [p for c in curves.curves for p in c.points if p.simulated]
    assert [p.run for p in simulated] == ["simulated run"] and curves.left_out == ""


def test_curves_restricted_to_a_workload_and_a_workload_version(data):
    curves = decision.decision_curves(data.team, {"workload": "c16-in256-out128"})
    assert sorted(p.run for c in curves.curves for p in c.points) == ["alpha c16", "beta c16"]
    assert "c16-in256-out128" in {c.value for c in curves.workloads}
    workload = Workload.objects.create(team=data.team, name="chat")
    version = WorkloadVersion.objects.create(workload=workload, number=2, spec={}, spec_sha256="0" * 64)
    PerformanceRun.objects.filter(pk=data.b_runs[0].pk).update(workload_version=version)
    curves = decision.decision_curves(data.team, {"workload_version": str(version.pk)})
    assert [p.run for c in curves.curves for p in c.points] == ["beta c1"]
    assert curves.workload == "workload chat v2"


def test_pareto_frontier_across_deployments(data):
    pareto = decision.decision_pareto(data.team, {})
    front = {(p.run, p.output_tps_per_user, p.output_tps_per_gpu) for p in pareto.frontier}
    assert front == {("alpha c1", 100.0, 100.0), ("beta c1", 100.0, 100.0), ("alpha c4", 50.0, 300.0),
                     ("alpha c16", 25.0, 500.0), ("beta c16", 25.0, 500.0)}  # fmt: skip
    off = {p.run for p in pareto.points if not p.on_frontier}
    assert off == {"alpha c64", "beta c4"}
    assert [p.output_tps_per_user for p in pareto.frontier] == sorted(p.output_tps_per_user for p in pareto.frontier)
    assert pareto.left_out.startswith("1 simulated run ")


def test_pareto_leaves_out_runs_without_gpus_or_tpot(data):
    PerformanceRun.objects.filter(pk=data.a_runs[0].pk).update(hardware=None)
    RunSummary.objects.filter(run=data.b_runs[0]).update(metrics={"ttft_ms": {"p95": 1.0}})
    pareto = decision.decision_pareto(data.team, {})
    assert pareto.missing_figures == 2 and len(pareto.points) == 5


def test_cost_ranks_the_latest_search_per_deployment_and_slo(data):
    ranking = decision.decision_cost(data.team, {})
    assert [(r.rank, r.search, r.cost_per_1m_output_usd) for r in ranking.rows] == [
        (1, "alpha latest", 1.25), (2, "alpha strict", 2.5), (3, "beta", 3.125), (None, "beta unpriced", None),
    ]  # fmt: skip
    assert ranking.superseded == 1
    assert ranking.rows[0].quality_pct == 72.5 and ranking.rows[2].quality_pct is None
    assert ranking.rows[0].slo == "p95 TTFT ≤ 500 ms, errors ≤ 1%"
    assert ranking.left_out.startswith("1 simulated capacity search ")
    with_simulated = decision.decision_cost(data.team, {"include_simulated": "1"})
    assert with_simulated.rows[0].search == "simulated search" and with_simulated.rows[0].simulated


# --- pages ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["curves", "pareto", "cost"])
def test_a_viewer_reads_every_page_without_other_teams_data(kind, viewer_client, data, other_data):
    response = viewer_client.get(reverse("analytics:decision", args=[kind]))
    content = response.content.decode()
    assert response.status_code == 200
    assert "other-team" not in content and "OTHERGPU" not in content
    assert "<svg" in content and 'id="download-xlsx"' in content
    assert "simulated" in content and 'id="left-out"' in content  # says what was left out


def test_pages_speak_words_not_field_names(viewer_client, data):
    content = viewer_client.get(reverse("analytics:decision", args=["curves"]), {"slo_ms": "500"}).content.decode()
    assert "Requests per second" in content and "p95 time to first token (ms)" in content
    assert "request_throughput_rps" not in content.replace('value="request_throughput_rps"', "")
    pareto = viewer_client.get(reverse("analytics:decision", args=["pareto"])).content.decode()
    assert "Output tokens per second per GPU" in pareto and "output_tps_per_gpu" not in pareto


def test_anonymous_users_are_sent_to_sign_in(client, data):
    for kind in ("curves", "pareto", "cost"):
        assert client.get(reverse("analytics:decision", args=[kind])).status_code == 302
        assert client.get(reverse("analytics:decision-export", args=[kind, "csv"])).status_code == 302


def test_the_index_opens_the_curves_and_an_unknown_view_is_404(viewer_client):
    assert viewer_client.get(reverse("analytics:decision-index")).url == reverse("analytics:decision", args=["curves"])
    assert viewer_client.get("/analytics/decision/heatmap/").status_code == 404
    assert viewer_client.get(reverse("analytics:decision-export", args=["curves", "docx"])).status_code == 404


def test_the_analytics_page_links_the_decision_pages(viewer_client):
    content = viewer_client.get(reverse("analytics:index")).content.decode()
    for kind in ("curves", "pareto", "cost"):
        assert f'href="{reverse("analytics:decision", args=[kind])}"' in content


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("curves", {"y": "vibes"}, "y"),
        ("curves", {"x": "watts"}, "x"),
        ("curves", {"slo_ms": "fast"}, "slo_ms"),
        ("curves", {"slo_ms": "-5"}, "slo_ms"),
        ("curves", {"search": "abc"}, "search"),
        ("curves", {"search": "999999"}, "search"),
        ("curves", {"deployments": "v1-x"}, "deployments"),
        ("curves", {"workload": "c16-banana"}, "workload"),
        ("curves", {"workload": "c99999999999999-in1"}, "workload"),
        ("curves", {"search": "9" * 30}, "search"),
        ("pareto", {"workload_version": "9" * 30}, "workload_version"),
        ("pareto", {"workload_version": "x"}, "workload_version"),
        ("pareto", {"include_simulated": "maybe"}, "include_simulated"),
        ("cost", {"timeframe": "1y"}, "timeframe"),
    ],
)
def test_bad_input_is_400_naming_the_field(kind, params, field, viewer_client, viewer_api, data):
    response = viewer_api.get(API + kind, params)
    assert response.status_code == 400 and field in response.json()
    page = viewer_client.get(reverse("analytics:decision", args=[kind]), params)
    assert page.status_code == 400 and f"{field}:" in page.content.decode()
    export = viewer_client.get(reverse("analytics:decision-export", args=[kind, "csv"]), params)
    assert export.status_code == 400


def test_a_search_without_an_objective_on_the_latency_is_a_400(viewer_api, data):
    response = viewer_api.get(API + "curves", {"y": "e2e_p95_ms", "search": data.latest.pk})
    assert response.status_code == 400 and "end-to-end" in response.json()["search"][0]


def test_another_teams_search_and_workload_version_are_not_found(viewer_api, data, other_data):
    assert viewer_api.get(API + "curves", {"search": other_data.latest.pk}).status_code == 400
    workload = Workload.objects.create(team=other_data.team, name="theirs")
    version = WorkloadVersion.objects.create(workload=workload, number=1, spec={}, spec_sha256="0" * 64)
    assert viewer_api.get(API + "pareto", {"workload_version": version.pk}).status_code == 400
    key = f"v{other_data.a.pk}-h{other_data.one.pk}-d{other_data.vllm.pk}"
    assert viewer_api.get(API + "curves", {"deployments": key}).status_code == 400


# --- API -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["curves", "pareto", "cost"])
def test_the_api_answers_a_viewer_and_refuses_anonymous(kind, viewer_api, anon_api, data, other_data):
    response = viewer_api.get(API + kind)
    assert response.status_code == 200
    assert b"other-team" not in response.content and b"OTHERGPU" not in response.content
    assert anon_api.get(API + kind).status_code in (401, 403)
    assert anon_api.get(f"/api/v1/export/analytics/decision/{kind}").status_code in (401, 403)


def test_the_api_chooses_deployments_by_key(viewer_api, data):
    key = f"v{data.b.pk}-h{data.eight.pk}-d{data.sglang.pk}"
    answer = viewer_api.get(API + "curves", {"deployments": key, "slo_ms": "500"}).json()
    assert answer["chosen"] == [key] and len(answer["curves"]) == 1
    assert answer["curves"][0]["best_throughput_within_slo"] == 6.0
    assert answer["throughput_label"] == "Requests per second"


def test_the_api_export_needs_a_known_format(viewer_api, data):
    response = viewer_api.get("/api/v1/export/analytics/decision/cost", {"format": "docx"})
    assert response.status_code == 400 and "format" in response.json()
    ok = viewer_api.get("/api/v1/export/analytics/decision/cost", {"format": "csv"})
    assert ok.status_code == 200 and _csv(ok)[0][0] == "rank"


# --- the same numbers everywhere -----------------------------------------------------------------------------


def test_curves_show_the_same_numbers_in_page_api_csv_and_xlsx(viewer_client, viewer_api, data):
    params = {"slo_ms": "500", "x": "request_throughput_rps", "y": "ttft_p95_ms"}
    api = viewer_api.get(API + "curves", params).json()
    expected = {(p["run"], rounded(p["throughput"]), rounded(p["latency_ms"]), p["within_slo"])
                for c in api["curves"] for p in c["points"]}  # fmt: skip
    assert len(expected) == 7
    rows = _csv(viewer_client.get(reverse("analytics:decision-export", args=["curves", "csv"]), params))
    head = rows[0]
    got = {(r[head.index("run")], float(r[head.index("request_throughput_rps")]),
            float(r[head.index("ttft_p95_ms")]), r[head.index("within_slo")] == "true") for r in rows[1:]}  # fmt: skip
    assert got == expected
    sheet = _sheets(viewer_client.get(reverse("analytics:decision-export", args=["curves", "xlsx"]), params))["points"]
    head = list(sheet[0])
    assert {(r[head.index("run")], r[head.index("request_throughput_rps")], r[head.index("ttft_p95_ms")],
             r[head.index("within_slo")]) for r in sheet[1:]} == expected  # fmt: skip
    page = _page_table(viewer_client, "curves", "points", params)
    head = page[0]
    x, y, run = head.index("Requests per second"), head.index("p95 time to first token (ms)"), head.index("Run")
    assert {(r[run], r[x], r[y]) for r in page[1:]} == {(e[0], number_text(e[1]), number_text(e[2])) for e in expected}


def test_pareto_frontier_is_the_same_in_page_api_csv_and_xlsx(viewer_client, viewer_api, data):
    api = viewer_api.get(API + "pareto").json()
    expected = [
        (p["run"], rounded(p["output_tps_per_user"]), rounded(p["output_tps_per_gpu"])) for p in api["frontier"]
    ]
    assert len(expected) == 5
    rows = _csv(viewer_client.get(reverse("analytics:decision-export", args=["pareto", "csv"])))
    head = rows[0]  # the CSV is the first table: the frontier
    assert [(r[head.index("run")], float(r[head.index("output_tps_per_user")]), float(r[head.index("output_tps_per_gpu")]))
            for r in rows[1:]] == expected  # fmt: skip
    sheets = _sheets(viewer_client.get(reverse("analytics:decision-export", args=["pareto", "xlsx"])))
    head = list(sheets["frontier"][0])
    assert [(r[0 + head.index("run")], r[head.index("output_tps_per_user")], r[head.index("output_tps_per_gpu")])
            for r in sheets["frontier"][1:]] == expected  # fmt: skip
    assert len(sheets["runs"]) - 1 == 7
    page = _page_table(viewer_client, "pareto", "frontier")
    head = page[0]
    assert [(r[head.index("Run")], r[head.index("Output tokens per second per user")],
             r[head.index("Output tokens per second per GPU")]) for r in page[1:]] == [
        (run, number_text(u), number_text(g)) for run, u, g in expected]  # fmt: skip


def test_cost_is_the_same_in_page_api_csv_xlsx_and_pdf(viewer_client, viewer_api, data, other_data):
    api = viewer_api.get(API + "cost").json()
    expected = [(r["search"], r["rank"], rounded(r["cost_per_1m_output_usd"], 2), rounded(r["quality_pct"], 1))
                for r in api["rows"]]  # fmt: skip
    assert expected[0] == ("alpha latest", 1, 1.25, 72.5)
    rows = _csv(viewer_client.get(reverse("analytics:decision-export", args=["cost", "csv"])))
    head = rows[0]

    def number(text):
        return float(text) if text else None

    assert [(r[head.index("search")], int(r[0]) if r[0] else None, number(r[head.index("cost_per_1m_output_usd")]),
             number(r[head.index("quality_pct")])) for r in rows[1:]] == expected  # fmt: skip
    sheet = _sheets(viewer_client.get(reverse("analytics:decision-export", args=["cost", "xlsx"])))["ranking"]
    head = list(sheet[0])
    assert [(r[head.index("search")], r[head.index("rank")], r[head.index("cost_per_1m_output_usd")],
             r[head.index("quality_pct")]) for r in sheet[1:]] == expected  # fmt: skip
    page = _page_table(viewer_client, "cost", "ranking")
    head = page[0]
    cost, quality = head.index(decision.COST_LABEL), head.index("Quality (%)")
    assert [(r[cost], r[quality]) for r in page[1:]] == [
        (number_text(c, 2), number_text(q, 1)) for _, _, c, q in expected
    ]
    pdf = _body(viewer_client.get(reverse("analytics:decision-export", args=["cost", "pdf"])))
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
    assert "1.25" in text and "72.5" in text and "other-team" not in text


@pytest.mark.parametrize(("kind", "fmt"), list(itertools.product(["curves", "pareto", "cost"], ["json", "pdf"])))
def test_every_view_downloads_as_json_and_pdf(kind, fmt, viewer_client, data, other_data):
    response = viewer_client.get(reverse("analytics:decision-export", args=[kind, fmt]))
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
    body = _body(response)
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages) if fmt == "pdf" else body.decode()
    assert "other-team" not in text and "OTHERGPU" not in text


# --- query counts --------------------------------------------------------------------------------------------


def _more_runs(data, n):
    for i in range(n):
        _run(data.team, data.b, data.one, data.vllm, rps=1.0 + i, tps=100.0 + i, ttft_p95=100.0 + i, e2e_p95=500.0,
             tpot_p50=10.0 + i, concurrency=100 + i)  # fmt: skip
        _search(
            data.team,
            ProviderEndpoint.objects.filter(team=data.team).first(),
            data.b,
            data.eight,
            data.vllm,
            cost=1.0 + i,
            slo={**SLO, "objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 100.0 + i}]},
        )


@pytest.mark.parametrize(
    "url",
    [reverse("analytics:decision", args=["curves"]) + "?slo_ms=500", reverse("analytics:decision", args=["pareto"]),
     reverse("analytics:decision", args=["cost"]), API + "curves", API + "pareto", API + "cost"],
)  # fmt: skip
def test_pages_and_apis_do_not_grow_with_runs(url, viewer_client, viewer_api, data, django_assert_max_num_queries):
    client = viewer_api if url.startswith("/api/") else viewer_client
    client.get(url)  # the token's first use writes last_used_at once
    cache.clear()  # computed, not read from the cache
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    _more_runs(data, 25)  # (a new version: computed again)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(url).status_code == 200


def test_a_view_is_cached_until_a_run_is_stored(viewer_client, data):
    url = reverse("analytics:decision", args=["pareto"])
    plotted = re.compile(r"Runs plotted</dt><dd>([\d,]+)")
    first = plotted.search(viewer_client.get(url).content.decode()).group(1)
    with CaptureQueriesContext(connection) as cached:
        assert plotted.search(viewer_client.get(url).content.decode()).group(1) == first
    _more_runs(data, 1)
    with CaptureQueriesContext(connection) as fresh:
        again = plotted.search(viewer_client.get(url).content.decode()).group(1)
    assert len(fresh.captured_queries) > len(cached.captured_queries)
    assert int(again) == int(first) + 1  # the new run is counted at once


def test_names_are_escaped_in_tables_and_charts(viewer_client, data):
    PerformanceRun.objects.filter(pk=data.a_runs[0].pk).update(name="<script>alert(1)</script>")
    Deployment.objects.filter(pk=data.vllm.pk).update(name="<b>bold</b>")
    for kind in ("curves", "pareto", "cost"):
        content = viewer_client.get(reverse("analytics:decision", args=[kind])).content.decode()
        assert "<script>alert(1)" not in content and "<b>bold</b>" not in content
    content = viewer_client.get(reverse("analytics:decision", args=["pareto"])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_a_run_without_hardware_or_deployment_is_its_own_curve(data):
    PerformanceRun.objects.filter(pk=data.a_runs[0].pk).update(hardware=None, deployment=None)
    curves = decision.decision_curves(data.team, {})
    lone = next(c for c in curves.curves if c.key == f"v{data.a.pk}-h0-d0")
    assert lone.deployment == "alpha-8b BF16 · no hardware · no deployment"
    assert [p.run for p in lone.points] == ["alpha c4"]
    chosen = decision.decision_curves(data.team, {"deployments": lone.key})
    assert [c.key for c in chosen.curves] == [lone.key] and len(chosen.curves[0].points) == 1
