"""Site-wide views: home, the sections still to come, and the operations endpoints."""

import uuid

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.hardware.models import HardwareProfile, PerformanceRun
from apps.scores.models import Benchmark, ModelVariant, Score
from llmbench.metrics import render_metrics

SECTIONS = {
    "analytics": ("Analytics", "Trends, comparisons, the quality × speed × cost leaderboard, reports and exports."),
}


@login_required
def home(request):
    team = request.team
    counts = {}
    if team is not None:
        counts = {
            "variants": ModelVariant.objects.filter(team=team).count(),
            "benchmarks": Benchmark.objects.filter(team=team).count(),
            "scores": Score.objects.filter(team=team).count(),
            "runs": PerformanceRun.objects.filter(team=team).count(),
            "hardware": HardwareProfile.objects.filter(team=team).count(),
        }
    return render(request, "home.html", {"counts": counts, "sections": SECTIONS})


@login_required
def coming(request, section: str):
    title, description = SECTIONS[section]
    return render(request, "coming.html", {"title": title, "description": description, "section": section})


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


READINESS_CHECKS = {
    "database": _check_database,
    "cache": _check_cache,
    "channel_layer": _check_channel_layer,
    "broker": _check_broker,
}


@require_GET
@never_cache
def ready(request):
    """Every dependency reachable: 200, else 503 naming what failed."""
    results, failed = {}, []
    for name, check in READINESS_CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure of a dependency is reported, never raised
            results[name] = f"failed: {type(exc).__name__}: {exc}"
            failed.append(name)
    body = {"status": "ok" if not failed else "unavailable", "checks": results, "failed": failed}
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


def error_404(request, exception=None):
    return render(request, "404.html", status=404)


def error_403(request, exception=None):
    return render(request, "403.html", {"reason": str(exception or "")}, status=403)


def error_500(request):
    return render(request, "500.html", status=500)
