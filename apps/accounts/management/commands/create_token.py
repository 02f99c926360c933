"""manage.py create_token USERNAME --team SLUG [--name NAME] [--expires-in-days N] [--scope full|read]: an API key."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import Team
from apps.accounts.services import token_create


class Command(BaseCommand):
    help = "Issue an API token for USERNAME acting in the team SLUG; prints the key once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--team", required=True, help="Slug of the team the token acts in.")
        parser.add_argument("--name", default="command line", help="A label for the token.")
        parser.add_argument(
            "--expires-in-days", type=int, default=None, help="Days until the key expires (default: never)."
        )
        parser.add_argument(
            "--scope", choices=["full", "read"], default="full", help="read: GET, HEAD and OPTIONS only."
        )

    def handle(self, *args, username, team, name, expires_in_days, scope, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        team_obj = Team.objects.filter(slug=team).first()
        if team_obj is None:
            raise CommandError(f"No team with slug {team!r}.")
        try:
            issued = token_create(user=user, team=team_obj, name=name, expires_in_days=expires_in_days, scope=scope)
        except (PermissionError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(issued.key)
