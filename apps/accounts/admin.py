from axes import admin as axes_admin
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib import admin
from django.db.models import OuterRef, Subquery, Sum
from django.utils import timezone

from apps.accounts.models import ApiToken, Membership, Team
from apps.accounts.services import token_revoke
from llmbench.admin import TeamScopedAdmin, is_team_admin


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "is_demo",
        "batch_confirm_requests",
        "monthly_budget_usd",
        "monthly_budget_hard_limit",
        "show_simulated",
        "created_at",
    ]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk=request.team.pk) if is_team_admin(request) else queryset.none()

    def has_module_permission(self, request):
        return request.user.is_superuser or is_team_admin(request)

    def has_view_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        return is_team_admin(request) and (obj is None or obj.pk == request.team.pk)

    has_change_permission = has_view_permission

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


def recent_failures(username_ref):
    """Failed sign-ins counted towards a lockout of the username (django-axes, within the cool-off)."""
    attempts = AccessAttempt.objects.filter(username=username_ref)
    if (cool_off := get_cool_off()) is not None:
        attempts = attempts.filter(attempt_time__gte=timezone.now() - cool_off)
    return Subquery(attempts.values("username").annotate(total=Sum("failures_since_start")).values("total")[:1])


@admin.register(Membership)
class MembershipAdmin(TeamScopedAdmin):
    list_display = ["user", "team", "role", "sign_in", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = []
    actions = ["unlock_sign_in"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(failed_sign_ins=recent_failures(OuterRef("user__username")))

    @admin.display(description="Sign-in")
    def sign_in(self, membership) -> str:
        failures = getattr(membership, "failed_sign_ins", None) or 0
        if failures >= settings.AXES_FAILURE_LIMIT:
            return "locked out"
        return f"{failures} failed" if failures else ""

    @admin.action(description="Unlock sign-in of the selected members")
    def unlock_sign_in(self, request, queryset):
        # Forgets the users' failed sign-ins, wherever they came from; an address blocked by failures for
        # other usernames stays blocked (a superuser unlocks it under Axes › Access attempts).
        usernames = sorted(set(queryset.values_list("user__username", flat=True)))
        for username in usernames:
            axes_reset(username=username)
        self.message_user(request, f"Unlocked sign-in of {len(usernames)} user(s): {', '.join(usernames)}.")


@admin.register(ApiToken)
class ApiTokenAdmin(TeamScopedAdmin):
    list_display = [
        "name",
        "user",
        "team",
        "key_prefix",
        "scope",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at", "scope"]
    search_fields = ["name", "user__username", "key_prefix"]
    readonly_fields = [
        "user",
        "key_prefix",
        "key_hash",
        "scope",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are issued on the tokens page or by `create_token`, shown once

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        # one by one through the service, so each revocation is saved as itself (and audited)
        active = list(queryset.filter(revoked_at__isnull=True))
        for token in active:
            token_revoke(token=token)
        self.message_user(request, f"Revoked {len(active)} token(s).")


class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
    """django-axes' failed sign-ins (superusers), with an action that lifts the lockouts they cause."""

    actions = [*axes_admin.AccessAttemptAdmin.actions, "unlock"]

    @admin.action(description="Unlock the selected usernames and addresses")
    def unlock(self, request, queryset):
        rows = set(queryset.values_list("username", "ip_address"))
        for username, ip_address in rows:
            if username:
                axes_reset(username=username)
            if ip_address:
                axes_reset(ip=ip_address)
        self.message_user(request, f"Unlocked {len(rows)} username and address pair(s).")


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, AccessAttemptAdmin)
