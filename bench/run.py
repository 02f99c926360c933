"""`make bench`: every bench script in turn; exits non-zero when any target is missed."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
codes = [
    subprocess.call([sys.executable, str(HERE / script)], cwd=HERE)
    for script in (
        "scores.py",
        "performance.py",
        "loadgen.py",
        "workloads.py",
        "batches.py",
        "analytics.py",
        "web.py",
        "capacity.py",
        "shards.py",
        "decision.py",
        "benchmarks_import.py",
        "benchmarks_run.py",
        "many_runs.py",
    )
]
sys.exit(max(codes))
