"""Sign-in counters for /metrics: password sign-ins on the site (LOGINS{method="password"}) and lockouts.

django-axes does the locking (settings "Login lockout", docs/limits.md); these receivers only count. The
API's sign-in (/api/v1/auth/login) counts itself as method="api" and single sign-on as method="sso", so
password attempts under /api/ and sign-ins through another backend are left to them here.
"""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed

from llmbench.exceptions import is_api_request
from llmbench.metrics import LOCKOUTS, LOGINS


def _on_the_site(request) -> bool:
    request = getattr(request, "_request", request)
    return request is not None and getattr(request, "path", None) is not None and not is_api_request(request)


def count_success(sender, request, user, **kwargs) -> None:
    # The sign-in form's POST with a password; not single sign-on's callback (a GET), nor a test's force_login.
    if _on_the_site(request) and request.method == "POST" and "password" in request.POST:
        LOGINS.labels("password", "success").inc()


def count_failure(sender, credentials, request=None, **kwargs) -> None:
    if "password" not in credentials or not _on_the_site(request):
        return
    # axes' own receiver ran first (its signals are connected when the admin is discovered, before
    # LlmbenchConfig.ready) and flagged the request when this attempt is answered with the lockout page.
    locked = getattr(getattr(request, "_request", request), "axes_locked_out", False)
    LOGINS.labels("password", "locked" if locked else "failure").inc()


def count_lockout(sender, request=None, **kwargs) -> None:
    LOCKOUTS.inc()


def connect() -> None:
    """Connect the counters (from LlmbenchConfig.ready); connecting twice changes nothing."""
    user_logged_in.connect(count_success, dispatch_uid="llmbench.signins.success")
    user_login_failed.connect(count_failure, dispatch_uid="llmbench.signins.failure")
    user_locked_out.connect(count_lockout, dispatch_uid="llmbench.signins.lockout")
