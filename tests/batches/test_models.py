"""A batch's parameters come back in sweep order from every database (PostgreSQL's jsonb sorts keys)."""

import pytest

from apps.batches.models import Batch
from apps.batches.parameters import combination
from tests.batches.helpers import make_batch, sim_endpoint

pytestmark = pytest.mark.django_db


def test_parameter_values_read_back_in_sweep_order(team):
    batch = make_batch(team, endpoint=sim_endpoint(team), ranges={"top_p": [0.5, 1.0], "temperature": [0.2, 0.8, 1.4]})
    stored = Batch.objects.get(pk=batch.pk)
    assert list(stored.parameter_values) == ["temperature", "top_p"]
    # Combination 1 is the second top_p (the last parameter turns fastest), on SQLite and PostgreSQL alike.
    assert combination(stored.parameter_values, 1) == {"temperature": 0.2, "top_p": 1.0}
