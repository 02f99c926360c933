"""Capacity searches (issue 14): how much traffic a deployment serves within an SLO, and at what cost.

A search owns a load sweep (`managed_by="capacity"`) whose steps are its probes: each probe is a step,
so a stored performance run, and is judged against the SLO (apps.capacity.engine.judge) in the same
transaction that stores it. What to probe next is a pure function of the judged probes so far
(apps.capacity.engine.search), so a search resumed after a lost worker picks up at the probe it lost.
"""

from django.conf import settings
from django.db import models

from apps.accounts.models import TeamOwned
from apps.batches.models import FINISHED, LoadSweep, LoadSweepStep, Status
from apps.hardware.models import Deployment, HardwareProfile
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant

__all__ = ["FINISHED", "CapacityProbe", "CapacitySearch", "Status"]


class CapacitySearch(TeamOwned):
    """Endpoint + model + workload + SLO + search space; the answer is stored in `result` and, for the
    decision views' queries, in the capacity_* / cost columns."""

    class Space(models.TextChoices):
        RATE = "rate", "Request rate (open loop)"
        CONCURRENCY = "concurrency", "Concurrency (closed loop)"

    class Arrivals(models.TextChoices):
        CONSTANT = "constant", "Evenly spaced"
        POISSON = "poisson", "Poisson"

    name = models.CharField(max_length=200)
    endpoint = models.ForeignKey(ProviderEndpoint, on_delete=models.PROTECT, related_name="capacity_searches")
    model = models.CharField(max_length=200, help_text="Model name sent to the endpoint.")
    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, related_name="capacity_searches")
    hardware = models.ForeignKey(HardwareProfile, on_delete=models.PROTECT, null=True, blank=True)
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, null=True, blank=True)
    workload_version = models.ForeignKey(
        "workloads.WorkloadVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="capacity_searches"
    )
    # Without a workload: synthetic prompts of about this many tokens, answers of exactly output_tokens.
    prompt_tokens = models.PositiveIntegerField(default=256)
    output_tokens = models.PositiveIntegerField(default=128)
    # {"objectives": [{"metric": "ttft_ms"|"tpot_ms"|"itl_ms"|"e2e_ms", "percentile": 50|90|95|99, "max_ms": 500.0}],
    #  "max_error_rate": 0.01 | null, "attainment": 0.95 | null (share of requests meeting every threshold at once),
    #  "confidence": 0.95}; checked by apps.capacity.engine.slo.validate_slo.
    slo = models.JSONField()
    space = models.CharField(max_length=12, choices=Space.choices, default=Space.RATE)
    arrivals = models.CharField(max_length=10, choices=Arrivals.choices, default=Arrivals.POISSON)
    start_level = models.FloatField(default=1.0, help_text="The first probe: req/s or concurrency.")
    max_level = models.FloatField(default=1024.0, help_text="The search does not probe past this.")
    tolerance = models.FloatField(
        default=0.05, help_text="Bisect until the bracket is this narrow (share of capacity)."
    )
    probe_duration_s = models.FloatField(default=30.0, help_text="Seconds each probe sends requests (after warm-up).")
    warmup_s = models.FloatField(default=0.0, help_text="Seconds each probe sends first and does not count.")
    repetitions = models.PositiveSmallIntegerField(default=1, help_text="Trials per probed level.")
    max_extra_trials = models.PositiveSmallIntegerField(
        default=2, help_text="Further trials of a level whose verdict is undecided before it is called undecided."
    )
    max_probes = models.PositiveSmallIntegerField(default=24, help_text="Probes (trials) the search may use at most.")
    shards = models.PositiveSmallIntegerField(default=1, help_text="Worker processes each probe is split across.")
    seed = models.PositiveIntegerField(default=0)
    sweep = models.OneToOneField(
        LoadSweep, on_delete=models.PROTECT, null=True, blank=True, related_name="capacity_search",
        help_text="The load sweep whose steps are this search's probes.",
    )  # fmt: skip
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    phase = models.CharField(max_length=10, blank=True, help_text="ramp, bisect or done.")
    # The task running the search now: a search runs in chunks (each a task under the queue's time limit), and a
    # chunk or a recovery goes on only with the lease (runner.run_search), so two workers never run one search.
    lease = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    recoveries = models.PositiveSmallIntegerField(
        default=0, help_text="Times in a row the search was picked up again after its worker went silent."
    )
    # The answer (engine.search.SearchResult.as_dict()): capacity, bracket, interval across trials, figures at
    # capacity, cost, what limited it, probes used, undecided levels; {} until the search finishes.
    result = models.JSONField(default=dict, blank=True)
    capacity = models.FloatField(null=True, blank=True, help_text="req/s (rate space) or concurrency.")
    capacity_low = models.FloatField(null=True, blank=True, help_text="Highest level that met the SLO.")
    capacity_high = models.FloatField(null=True, blank=True, help_text="Lowest level that did not.")
    capacity_rps = models.FloatField(null=True, blank=True, help_text="Requests per second at capacity.")
    goodput_rps = models.FloatField(null=True, blank=True)
    output_tps = models.FloatField(null=True, blank=True, help_text="Output tokens per second at capacity.")
    output_tps_per_gpu = models.FloatField(null=True, blank=True)
    output_tps_per_user = models.FloatField(null=True, blank=True)
    cost_per_1m_output_usd = models.FloatField(null=True, blank=True, help_text="At the SLO, at capacity.")
    is_simulated = models.BooleanField(default=False, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "capacity searches"

    def __str__(self) -> str:
        return self.name

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def unit(self) -> str:
        return "req/s" if self.space == self.Space.RATE else "concurrent requests"


class CapacityProbe(models.Model):
    """One trial at one level: a step of the search's sweep, judged. `verdict` is the level's verdict
    after pooling this trial with the level's earlier ones ("more" while another trial is wanted)."""

    class Verdict(models.TextChoices):
        PASS = "pass", "meets the SLO"
        FAIL = "fail", "misses the SLO"
        SATURATED = "saturated", "server saturated"
        UNDECIDED = "undecided", "undecided"
        MORE = "more", "needs another trial"
        CLIENT_LIMITED = "client", "client could not keep up"

    search = models.ForeignKey(CapacitySearch, on_delete=models.CASCADE, related_name="probes")
    index = models.PositiveIntegerField(help_text="Order of the probe in the search (0 first).")
    level = models.FloatField()
    trial = models.PositiveSmallIntegerField(default=0)
    phase = models.CharField(max_length=10, help_text="ramp, bisect or extend.")
    step = models.OneToOneField(LoadSweepStep, on_delete=models.PROTECT, related_name="capacity_probe")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    # engine.judge.Judgement.as_dict(): per objective {"label", "share", "low", "high", "n", "target", "verdict"}
    # over the level's pooled trials, the saturation signals and the figures of this trial.
    judgement = models.JSONField(default=dict)
    figures = models.JSONField(default=dict, help_text="This trial: achieved rate, goodput, tok/s, p95s …")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["search", "index"]
        constraints = [models.UniqueConstraint(fields=["search", "index"], name="capacity_probe_unique_index")]

    def __str__(self) -> str:
        return f"{self.search} probe {self.index + 1}"
