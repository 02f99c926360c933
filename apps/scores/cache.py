"""The leaderboard's and the quantization view's answers, cached per team, request and data version.

With measured scores (intervals, links to runs, paired comparisons) a 100-variant page cost about 30 ms of CPU to
compute and render; at 8 concurrent requests on 2 CPUs that queueing alone broke the 100 ms p95 target. The
answer (rendered HTML or JSON bytes) is cached under a version read in two cheap aggregates, so an import, a
measured score published or a score edited by any process changes the key at once. What the version cannot see
(a variant renamed, the team's show-simulated switch is part of the request's own key) shows within
SCORES_CACHE_TTL_S.
"""

import hashlib
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection

from apps.accounts.models import Team
from apps.scores.models import Benchmark, ModelVariant, Score

SCORES_CACHE_TTL_S = 60


def scores_version(team: Team) -> str:
    """What a cached answer was computed from: the team's scores, variants and benchmarks, in one query (written
    out: the ORM spent longer building seven subqueries than the database answering them)."""
    parts = []
    for model, extra in ((Score, ", MAX(updated_at)"), (ModelVariant, ""), (Benchmark, "")):
        parts.append(f"SELECT COUNT(*), MAX(id){extra or ', NULL'} FROM {model._meta.db_table} WHERE team_id = %s")
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), [team.pk] * 3)
        return repr(cursor.fetchall())


def cached_answer(what: str, team: Team, parts: tuple, build: Callable[[], str | bytes]) -> str | bytes:
    """`build()` once per team, answer kind, request parts (path with query, role, simulated switch …) and
    data version, for SCORES_CACHE_TTL_S."""
    digest = hashlib.sha256(repr((parts, scores_version(team))).encode()).hexdigest()[:32]
    key = f"scores:v1:{what}:team{team.pk}:{digest}"
    found = cache.get(key)
    if found is None:
        found = build()
        cache.set(key, found, SCORES_CACHE_TTL_S)
    return found
