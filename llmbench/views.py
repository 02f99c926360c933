"""Site-wide views: home (the dashboard) and the operations endpoints."""

import uuid

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.functional import SimpleLazyObject
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.accounts.models import Membership
from llmbench import dashboard
from llmbench.exceptions import is_api_request, with_request_id
from llmbench.metrics import render_metrics
from llmbench.readiness import REGISTERED_CHECKS, CheckFailed


@login_required
def home(request):
    """The dashboard of the active team: running jobs (live over /ws/dashboard/), the latest runs,
    experiments and batches, this month's cost against the budget, test cases to review (admins), the
    30-day quality trend and the regressions of the latest runs."""
    team = request.team
    if team is None:
        return render(request, "home.html")
    is_admin = request.membership.has_role(Membership.Role.ADMIN)
    # One query for the counts and the versions of what is cached; the jobs' queries only for the kinds
    # that have something running (none on most visits).
    figures = dashboard.page_figures(team, with_pending_testcases=is_admin)
    # cached per team until its data changes (while runs go, at most DASHBOARD_TILES_REFRESH_S old)
    tiles = dashboard.analytics_tiles(team, version=figures.tiles_version, busy=bool(figures.running_kinds))
    context = {
        "counts": figures.counts,
        "jobs": dashboard.running_jobs(team, kinds=figures.running_kinds) if figures.running_kinds else [],
        # Read only when the template's cached fragment of the tiles below is missing.
        "latest": SimpleLazyObject(lambda: dashboard.latest(team, version=figures.latest_version)),
        "cost": tiles.cost,
        "pending_testcases": figures.pending_testcases,
        "trend": tiles.trend,
        "regressions": tiles.regressions,
        # The tiles from the latest lists to the counts are the same for every member of the team until its
        # data changes: the template caches them rendered, under the versions of everything they show, for
        # as long as the analytical tiles (what the versions cannot see, a rename, shows as late as there).
        "fragment_version": f"{tiles.key}:{figures.latest_version}:{sorted(figures.counts.items())}",
        "fragment_ttl_s": dashboard.TILES_TTL_S,
    }
    return render(request, "home.html", context)


@require_GET
@never_cache
def health(request):
    """The process is up (no dependencies checked)."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    key = f"ready-{uuid.uuid4().hex}"
    cache.set(key, "1", 10)
    if cache.get(key) != "1":
        raise RuntimeError("a value written could not be read back")
    cache.delete(key)


def _check_channel_layer() -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.send)(channel, {"type": "ready.check"})
    message = async_to_sync(layer.receive)(channel)
    if message.get("type") != "ready.check":
        raise RuntimeError("a message sent could not be received")


def _check_broker() -> None:
    from django_q.brokers import get_broker

    if not get_broker().ping():
        raise RuntimeError("the broker did not answer")


def _check_task_cluster() -> str:
    """Tasks that wait are being taken (a cluster can answer pings and save fresh stats while its
    workers take nothing); with nothing waiting, no worker at all is fine and said so."""
    from llmbench.workers import cluster_health

    health = cluster_health()
    if not health.ok:
        raise RuntimeError(health.detail)
    return health.detail


READINESS_CHECKS = {
    "database": _check_database,
    "cache": _check_cache,
    "channel_layer": _check_channel_layer,
    "broker": _check_broker,
    "task_cluster": _check_task_cluster,
}


@require_GET
@never_cache
def ready(request):
    """Every dependency reachable and the task cluster taking tasks: 200, else 503 naming what
    failed. A check may say more than "ok" (what it saw) by returning it. Registered checks that
    are not required (READY_CHECK_PROVIDERS=report) are reported but do not fail it."""
    checks = [(name, check, True) for name, check in READINESS_CHECKS.items()]
    checks += [(name, entry.check, None) for name, entry in REGISTERED_CHECKS.items() if entry.enabled()]
    results, failed, degraded, details = {}, [], [], {}
    for name, check, required in checks:
        try:
            detail = check()
            results[name] = "ok" if not detail else f"ok: {detail}"
        except Exception as exc:  # any failure of a dependency is reported, never raised
            if isinstance(exc, CheckFailed):  # its message says it all
                results[name] = f"failed: {exc}"
                if exc.details is not None:
                    details[name] = exc.details
            else:
                results[name] = f"failed: {type(exc).__name__}: {exc}"
            if required is None:
                required = REGISTERED_CHECKS[name].required()
            (failed if required else degraded).append(name)
    status = "unavailable" if failed else "degraded" if degraded else "ok"
    body = {"status": status, "checks": results, "failed": failed}
    if degraded:
        body["degraded"] = degraded
    if details:
        body["details"] = details
    return JsonResponse(body, status=503 if failed else 200)


@require_GET
@never_cache
def metrics(request):
    """Prometheus text format; asks for a bearer token when METRICS_TOKEN is set."""
    if settings.METRICS_TOKEN:
        expected = f"Bearer {settings.METRICS_TOKEN}"
        if request.headers.get("Authorization", "") != expected:
            return HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
    body, content_type = render_metrics()
    return HttpResponse(body, content_type=content_type)


# Error views: pages for people, JSON with the request id for API clients (anything under /api/).


def _api_error(detail: str, status: int) -> JsonResponse:
    return JsonResponse(with_request_id({"detail": detail}), status=status)


def error_400(request, exception=None):
    if is_api_request(request):
        return _api_error("Bad request.", 400)
    return defaults.bad_request(request, exception)


def error_404(request, exception=None):
    if is_api_request(request):
        return _api_error("Not found.", 404)
    return render(request, "404.html", status=404)


def error_403(request, exception=None):
    if is_api_request(request):
        return _api_error("You do not have permission to perform this action.", 403)
    return render(request, "403.html", {"reason": str(exception or "")}, status=403)


def error_500(request):
    # Never the exception's text: it is logged (with the same request id), not shown.
    if is_api_request(request):
        return _api_error("Server error: the request id identifies it in the server's log.", 500)
    return render(request, "500.html", status=500)
