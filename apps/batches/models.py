"""Load sweeps: steps of concurrency levels or request rates against an endpoint, each stored as a
performance run. The state lives here, never only in the task queue."""

from django.conf import settings
from django.db import models

from apps.accounts.models import TeamOwned
from apps.batches.parameters import PARAMETERS
from apps.experiments.models import Experiment
from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant


class SweepOrderJSONField(models.JSONField):
    """A {parameter: values} object read back in sweep order (PARAMETERS): PostgreSQL's jsonb keeps keys
    sorted by length, not as written, and the order of the parameters is what decodes a combination index."""

    def from_db_value(self, value, expression, connection):
        values = super().from_db_value(value, expression, connection)
        if not isinstance(values, dict):
            return values
        return {name: values[name] for name in sorted(values, key=lambda n: (list(PARAMETERS).index(n)
                                                                            if n in PARAMETERS else len(PARAMETERS), n))}  # fmt: skip


class Status(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = {Status.COMPLETED, Status.FAILED, Status.CANCELLED}


class LoadSweep(TeamOwned):
    """A load test: one endpoint and model, a workload, and a list of steps to run in order."""

    class Mode(models.TextChoices):
        CLOSED = "closed", "Concurrency levels (closed loop)"
        OPEN = "open", "Request rates (open loop)"

    class Arrivals(models.TextChoices):
        CONSTANT = "constant"
        POISSON = "poisson"

    name = models.CharField(max_length=200)
    endpoint = models.ForeignKey(ProviderEndpoint, on_delete=models.PROTECT, related_name="load_sweeps")
    model = models.CharField(max_length=200, help_text="Model name sent to the endpoint.")
    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, related_name="load_sweeps")
    hardware = models.ForeignKey(HardwareProfile, on_delete=models.PROTECT, null=True, blank=True)
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, null=True, blank=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.CLOSED)
    arrivals = models.CharField(max_length=10, choices=Arrivals.choices, default=Arrivals.CONSTANT)
    levels = models.JSONField(help_text="Concurrency levels or request rates (req/s), one step each.")
    step_duration_s = models.FloatField(null=True, blank=True)
    step_request_count = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=256, help_text="Mean prompt length (synthetic text).")
    prompt_tokens_stdev = models.PositiveIntegerField(default=0)
    prompts = models.JSONField(
        default=list, blank=True, help_text="Prompts to cycle through instead of synthetic text."
    )
    output_tokens = models.PositiveIntegerField(default=128)
    ignore_eos = models.BooleanField(default=True)
    temperature = models.FloatField(default=0.0)
    seed = models.PositiveIntegerField(default=0)
    # A workload (issue 13) replaces the quick synthetic text above: the version is fixed when the sweep is made.
    workload_version = models.ForeignKey(
        "workloads.WorkloadVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="load_sweeps"
    )
    warmup_requests = models.PositiveIntegerField(default=0, help_text="Requests per step sent first and not counted.")
    warmup_s = models.FloatField(default=0.0, help_text="Seconds per step sent first and not counted.")
    token_calibration = models.JSONField(
        null=True, blank=True, help_text="Words-to-tokens fit measured against the server before the first step."
    )
    trials = models.PositiveSmallIntegerField(
        default=1, help_text="Times each level is run; figures across trials get t intervals."
    )
    shards = models.PositiveSmallIntegerField(
        default=1, help_text="Worker processes each step is split across (each sends 1/N of the load)."
    )
    # "" for a sweep a user made; "capacity" for the probes of a capacity search, which that app runs,
    # resumes and recovers (apps.capacity): the sweep pages and the stalled-sweep job leave it alone.
    managed_by = models.CharField(max_length=20, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    current_step = models.PositiveIntegerField(null=True, blank=True)
    progress = models.JSONField(default=dict, blank=True, help_text="Live figures of the running step.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def group_name(self) -> str:
        return f"sweep-{self.pk}"


class LoadSweepStep(models.Model):
    """One level of a sweep; its results are the performance run it stored."""

    sweep = models.ForeignKey(LoadSweep, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    level = models.FloatField(help_text="Concurrency, or request rate in req/s.")
    trial = models.PositiveSmallIntegerField(default=0, help_text="Which repetition of the level (0 first).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    run = models.OneToOneField(
        PerformanceRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="sweep_step"
    )
    achieved_concurrency = models.FloatField(null=True, blank=True)
    achieved_rate_rps = models.FloatField(null=True, blank=True)
    dispatch_delay_p99_ms = models.FloatField(null=True, blank=True)
    client_kept_up = models.BooleanField(null=True)
    client_note = models.CharField(max_length=300, blank=True)
    # Open loop: latency counted from each request's scheduled time, so a client that fell behind
    # cannot hide its delay (coordinated omission): {"ttft_p50_ms", "ttft_p99_ms", "e2e_p50_ms", "e2e_p99_ms"}.
    schedule_latency = models.JSONField(default=dict, blank=True)
    # Sharded steps (sweep.shards > 1): {"shards": N, "attempt": a, "start_skew_ms": [per shard],
    # "max_skew_ms": x, "barrier": "database"} — how far each shard's first send was from the shared start.
    shard_alignment = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sweep", "index"]
        constraints = [models.UniqueConstraint(fields=["sweep", "index"], name="sweep_step_unique_index")]

    def __str__(self) -> str:
        return f"{self.sweep} step {self.index + 1}"


class StepShard(models.Model):
    """One worker's share of a sharded step (apps.batches.shards): it waits at the barrier until every
    shard of the attempt is ready, starts at the shared wall-clock instant, and leaves its results here
    for the coordinator to merge into the step's one performance run."""

    step = models.ForeignKey(LoadSweepStep, on_delete=models.CASCADE, related_name="shards")
    attempt = models.PositiveSmallIntegerField(default=0, help_text="A step run again after a lost shard: 1, 2 …")
    index = models.PositiveSmallIntegerField()
    count = models.PositiveSmallIntegerField(help_text="Shards in the attempt.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the process running it.")
    ready_at = models.DateTimeField(null=True, blank=True)
    start_at_epoch = models.FloatField(null=True, blank=True, help_text="The shared start (time.time()).")
    started_at_epoch = models.FloatField(null=True, blank=True, help_text="When this shard actually began.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    results = models.BinaryField(null=True, blank=True, help_text="The shard's outcome, compressed (shards.py).")
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["step", "attempt", "index"]
        constraints = [models.UniqueConstraint(fields=["step", "attempt", "index"], name="step_shard_unique_index")]

    def __str__(self) -> str:
        return f"{self.step} shard {self.index + 1}/{self.count}"

    @property
    def skew_ms(self) -> float | None:
        if self.start_at_epoch is None or self.started_at_epoch is None:
            return None
        return (self.started_at_epoch - self.start_at_epoch) * 1000


class Batch(models.Model):
    """A parameter sweep: its experiment (prompt or approved test cases, targets, repetitions,
    status) asked once per combination of the parameter values. Progress, the worker's lease and
    the live preview live here; every result is a Response of the experiment, keyed by
    (target, item, combination, repetition)."""

    class Objective(models.TextChoices):
        OVERALL = "overall", "Overall quality (text metrics)"
        COHERENCE = "coherence", "Coherence"
        COMPLETENESS = "completeness", "Completeness"
        READABILITY = "readability", "Readability"
        LENGTH = "length_appropriateness", "Length appropriateness"
        CREATIVITY = "creativity", "Creativity"
        SPECIFICITY = "specificity", "Specificity"
        SCORE = "score", "Evaluator score"
        PASS_RATE = "pass_rate", "Pass rate"

    experiment = models.OneToOneField(Experiment, on_delete=models.CASCADE, primary_key=True, related_name="batch")
    parameter_ranges = models.JSONField(help_text="As given, in the seed format.")
    parameter_values = SweepOrderJSONField(help_text="Each parameter's values, in sweep order.")
    combination_count = models.PositiveIntegerField()
    result_count = models.PositiveIntegerField(help_text="combinations × targets × items × repetitions")
    concurrency = models.PositiveIntegerField(default=4, help_text="Requests in flight at once.")
    objective = models.CharField(
        max_length=30, choices=Objective.choices, default=Objective.OVERALL,
        help_text="The quality figure of the heatmap, the best-so-far settings and the status preview.",
    )  # fmt: skip
    estimate = models.JSONField(default=dict, blank=True, help_text="Duration and cost estimated before the start.")
    confirmed = models.BooleanField(default=False, help_text="Started over the team's limit with confirmation.")
    completed_results = models.PositiveIntegerField(default=0)
    failed_results = models.PositiveIntegerField(default=0)
    completed_combinations = models.PositiveIntegerField(default=0)
    current_parameters = models.JSONField(default=dict, blank=True)
    preview = models.JSONField(default=dict, blank=True, help_text="Best combination so far and the mean objective.")
    queued_at = models.DateTimeField(null=True, blank=True)
    run_started_at = models.DateTimeField(null=True, blank=True, help_text="When the current (re)start began.")
    run_started_results = models.PositiveIntegerField(default=0, help_text="Results stored before it began.")
    lease = models.CharField(max_length=32, blank=True, help_text="The chunk running the batch now.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    recoveries = models.PositiveIntegerField(
        default=0, help_text="Chunks in a row that took the lease and were lost before storing a result."
    )

    class Meta:
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return self.experiment.name

    @property
    def group_name(self) -> str:
        return f"batch-{self.pk}"
