"""System checks for production (`manage.py check --deploy`): operations settings Django cannot know about."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured


@register(Tags.security, deploy=True)
def check_metrics_token(app_configs, **kwargs) -> list[Warning]:
    """/metrics answers anyone unless METRICS_TOKEN is set: queue depths, request counts and team activity."""
    if settings.METRICS_TOKEN:
        return []
    return [
        Warning(
            "METRICS_TOKEN is not set, so /metrics is public: anyone who can reach the site reads its "
            "Prometheus metrics.",
            hint="Set METRICS_TOKEN to a long random value and give Prometheus "
            "`authorization: {credentials: <token>}` (sent as `Authorization: Bearer <token>`).",
            id="llmbench.W001",
        )
    ]


@register(Tags.security, deploy=True)
def check_csp_enforced(app_configs, **kwargs) -> list[Warning]:
    """CSP_REPORT_ONLY is for trying a policy change; left on, the policy protects nothing."""
    if getattr(settings, "CONTENT_SECURITY_POLICY", None):
        return []
    return [
        Warning(
            "The Content-Security-Policy is not enforced (CSP_REPORT_ONLY is on): browsers report "
            "violations but block nothing.",
            hint="Unset CSP_REPORT_ONLY once the reports are clean.",
            id="llmbench.W002",
        )
    ]


@register()
def check_throttle_rates(app_configs, **kwargs) -> list[Error]:
    """A bad THROTTLE_RATE_* would fail every API call: say so at start-up."""
    from llmbench.throttling import parse_rate

    errors = []
    for scope, rate in settings.THROTTLE_RATES.items():
        try:
            parse_rate(scope, rate)
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="llmbench.E001"))
    return errors
