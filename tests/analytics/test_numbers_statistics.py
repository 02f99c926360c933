"""The PostgreSQL expression statistics of the analytics migration are on exactly the expressions the views
group by: the planner uses statistics only on an identical expression, so a drift would silently bring
back the slow plan (a sort of every row in one process)."""

import importlib

import pytest
from django.db.backends.postgresql.base import DatabaseWrapper
from django.db.models.functions import Floor, TruncDay, TruncWeek

from apps.batches.selectors import QUALITY_METRICS, metric_expression
from apps.experiments.models import Response

migration = importlib.import_module("apps.analytics.migrations.0001_response_expression_statistics")


def _postgresql_sql(expression) -> str:
    """The SQL PostgreSQL gets for an annotation (parameters inlined as the server sees them), without the
    table name, compiled for PostgreSQL whatever database the tests use."""
    wrapper = DatabaseWrapper({"NAME": "unused", "USER": "", "PASSWORD": "", "HOST": "", "PORT": "",
                               "OPTIONS": {}, "TIME_ZONE": None, "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False,
                               "AUTOCOMMIT": True, "ATOMIC_REQUESTS": False, "TEST": {}}, alias="compile-only")  # fmt: skip
    query = Response.objects.annotate(value=expression).values("value").query
    sql, params = query.get_compiler(connection=wrapper).as_sql()
    select = sql.removeprefix("SELECT ").split(' AS "value"')[0]
    for param in params:
        select = select.replace("%s", f"'{param}'" if isinstance(param, str) else str(param), 1)
    return select.replace('"experiments_response".', "")


@pytest.mark.parametrize(
    ("name", "expression"),
    [("analytics_response_day", TruncDay("created_at")), ("analytics_response_week", TruncWeek("created_at")),
     *((f"analytics_response_bin_{m}", Floor(metric_expression(m) / 10.0)) for m in QUALITY_METRICS)],
)  # fmt: skip
def test_statistics_are_on_the_expressions_the_views_group_by(name, expression, settings):
    """Each statistics object's expression is the SQL Django writes for the grouping (periods in UTC)."""
    settings.TIME_ZONE = "UTC"
    assert migration.EXPRESSIONS[name] == _postgresql_sql(expression)
