"""The Django admin for team admins: each one sees and edits only the active team's rows."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import render, resolve_url

from apps.accounts.models import Membership


def is_team_admin(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.has_role(Membership.Role.ADMIN)


class TeamAdminSite(admin.AdminSite):
    """Open to superusers and to admins of the active team; no is_staff flag needed."""

    site_header = "llmbench admin"
    site_title = "llmbench admin"
    index_title = "Team administration"

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return user.is_active and (user.is_superuser or is_team_admin(request))

    def login(self, request: HttpRequest, extra_context=None):
        # One login for the whole site: the admin's own form would demand is_staff. A signed-in
        # user who is not an admin of the active team gets a 403, not a redirect loop.
        if request.user.is_authenticated:
            reason = "The admin is for admins of the active team."
            return render(request, "403.html", {"reason": reason}, status=403)
        target = resolve_url(settings.LOGIN_URL)
        next_url = request.GET.get("next") or resolve_url("admin:index")
        return HttpResponseRedirect(f"{target}?{urlencode({'next': next_url})}")


class TeamScopedAdmin(admin.ModelAdmin):
    """ModelAdmin for a team-owned model: rows, choices and permissions follow the active team."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        if not is_team_admin(request):
            return queryset.none()
        return queryset.filter(team=request.team)

    def _allowed(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return True
        if not is_team_admin(request):
            return False
        return obj is None or obj.team_id == request.team.pk

    def has_module_permission(self, request):
        return self._allowed(request)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request, obj)

    def has_add_permission(self, request):
        return self._allowed(request)

    def has_change_permission(self, request, obj=None):
        return self._allowed(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._allowed(request, obj)

    def get_exclude(self, request, obj=None):
        excluded = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser:
            excluded.append("team")
        return excluded

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if request.user.is_superuser and "team" not in filters:
            filters.insert(0, "team")
        return filters

    def _scope_choices(self, db_field, request, kwargs: dict) -> None:
        # Choices of a related team-owned model are limited to the active team.
        related = db_field.related_model
        if not request.user.is_superuser and any(f.name == "team" for f in related._meta.fields):
            kwargs["queryset"] = related._default_manager.filter(team=request.team)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        self._scope_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        self._scope_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not request.user.is_superuser:
            obj.team = request.team
        super().save_model(request, obj, form, change)
