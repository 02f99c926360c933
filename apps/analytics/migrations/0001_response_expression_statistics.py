"""Statistics on the expressions the analytics group responses by (PostgreSQL only; nothing on SQLite).

The planner estimates how many groups `GROUP BY date_trunc('day', created_at …)` or a histogram bin
`floor(quality_overall / 10.0)` makes from the column's distinct values (200,000 timestamps), not from the
expression's (90 days, 11 bins). With that estimate it sorts every row in one process instead of hashing a
few hundred groups in parallel workers: 2–3 times slower over 200,000 responses (docs/adr, analytics).
Expression statistics (PostgreSQL 14+) give it the real numbers; ANALYZE (and autovacuum after it) keeps
them current. The expressions are exactly the SQL Django writes for TruncDay / TruncWeek (UTC) and
`Floor(metric_expression(m) / 10.0)` (apps.batches.selectors), as tests/analytics/test_numbers_statistics.py
checks, since the planner only uses statistics on an identical expression.
"""

from django.db import migrations

TABLE = "experiments_response"
EXPRESSIONS = {
    "analytics_response_day": """DATE_TRUNC('day', "created_at" AT TIME ZONE 'UTC')""",
    "analytics_response_week": """DATE_TRUNC('week', "created_at" AT TIME ZONE 'UTC')""",
    **{
        f"analytics_response_bin_{metric}": f'FLOOR(("quality_{metric}" / 10.0))'
        for metric in (
            "overall",
            "coherence",
            "completeness",
            "readability",
            "length_appropriateness",
            "creativity",
            "specificity",
        )
    },
    "analytics_response_bin_score": 'FLOOR((("score" * 100.0) / 10.0))',
    "analytics_response_bin_pass_rate": (
        'FLOOR((CASE WHEN "passed" THEN 100.0 WHEN NOT "passed" THEN 0.0 ELSE NULL END / 10.0))'
    ),
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, expression in EXPRESSIONS.items():
        schema_editor.execute(f"CREATE STATISTICS IF NOT EXISTS {name} ON ({expression}) FROM {TABLE}")
    schema_editor.execute(f"ANALYZE {TABLE}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in EXPRESSIONS:
        schema_editor.execute(f"DROP STATISTICS IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("experiments", "0005_response_figure_columns")]

    operations = [migrations.RunPython(create, drop)]
