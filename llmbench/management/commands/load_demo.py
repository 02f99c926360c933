"""manage.py load_demo: a demo team and login with demo data in every section built so far."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from apps.accounts.models import Membership, Team
from apps.accounts.services import membership_set
from apps.batches.demo import demo_batch_load
from apps.benchmarks.demo import load as demo_benchmarks_load
from apps.capacity.demo import demo_capacity_load
from apps.experiments.demo import demo_quality_load
from apps.hardware.demo import demo_performance_load
from apps.providers.demo import demo_endpoint_load
from apps.scores.demo import demo_scores_load
from apps.workloads.demo import demo_workloads_load


class Command(BaseCommand):
    help = "Create (or refresh) the demo team, the demo login and demo data. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-password", help="Set only when the user is created.")

    def handle(self, *args, username, password, **options):
        team, _ = Team.objects.get_or_create(slug="demo", defaults={"name": "Demo team", "is_demo": True})
        if not team.show_simulated:  # the demo's results are all simulated: show them, or its pages are empty
            team.show_simulated = True
            team.save(update_fields=["show_simulated"])
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_password(password)
            user.save()
        membership_set(user=user, team=team, role=Membership.Role.ADMIN)
        summary = demo_scores_load(team=team)
        runs = demo_performance_load(team=team)
        demo_endpoint_load(team=team)
        responses = demo_quality_load(team=team, user=user)
        sweep_results = demo_batch_load(team=team, user=user)
        workloads = demo_workloads_load(team=team, user=user)
        searches = demo_capacity_load(team=team, user=user)
        benchmarks = demo_benchmarks_load(team, user)
        self.stdout.write(
            f"Demo team '{team.slug}': {summary.rows} scores "
            f"({summary.scores_created} new, {summary.scores_updated} refreshed), {runs} performance runs, "
            f"{responses} evaluated demo responses, a parameter sweep with {sweep_results} results, {workloads} workloads, "
            f"{searches} capacity searches, {benchmarks['runs']} benchmark runs over {benchmarks['items']} items "
            f"({benchmarks['measured_scores']} measured scores)."
        )
        if created:
            self.stdout.write(f"Demo login: {username} / {password} (team admin of the demo team)")
        else:
            self.stdout.write(f"Demo login: {username} (password unchanged)")
