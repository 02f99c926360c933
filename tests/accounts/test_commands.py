"""create_token prints a working key; bad arguments fail clearly."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.accounts.services import token_authenticate

pytestmark = pytest.mark.django_db


def test_it_prints_a_key_that_authenticates(member, team):
    out = StringIO()
    call_command("create_token", member.username, "--team", team.slug, "--name", "ci", stdout=out)
    token, membership = token_authenticate(out.getvalue().strip())
    assert token.name == "ci" and membership.team == team


@pytest.mark.parametrize(
    ("username", "slug", "message"),
    [("nobody", "alpha", "No user"), (None, "nope", "No team"), (None, "bravo", "not a member")],
)
def test_it_fails_clearly(member, team, other_team, username, slug, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_token", username or member.username, "--team", slug)
