"""Sharded steps (issue 14): one load step split across N worker processes. CONTRACT — implementation pending.

`run_sharded(sweep, step, config, plan)` is called by the runner's process (the coordinator) for a step of a
sweep with `shards > 1`. It creates the attempt's StepShard rows, queues shards 1..N-1 as django-q2 tasks
(`apps.batches.tasks.load_step_shard`), runs shard 0 itself, and returns the merged outcome, as if one process
had run the whole step: (StepOutcome, runner._Live, alignment dict for LoadSweepStep.shard_alignment).

`share_spec(spec, index, count)` is a StepSpec / SessionStepSpec for shard `index` of `count`: 1/count of the
concurrency or rate (and of request_count / warm-up requests), its own arrival seed.
"""


def share_spec(spec, index: int, count: int):
    raise NotImplementedError


def run_sharded(sweep, step, config, plan):
    raise NotImplementedError
