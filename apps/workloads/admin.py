"""Workloads in the admin: names and archiving are editable; files and versions are shown, never edited.

Uploaded bytes (a tokenizer's content, a dataset's payload) are never shown: they can be hundreds of MB."""

from django.contrib import admin

from apps.workloads.models import Tokenizer, Workload, WorkloadDataset, WorkloadVersion
from llmbench.admin import TeamScopedAdmin, is_team_admin

VERSION_FIELDS = ["number", "spec", "spec_sha256", "dataset", "tokenizer", "created_by", "created_at"]


@admin.register(Tokenizer)
class TokenizerAdmin(TeamScopedAdmin):
    list_display = ["name", "variant", "vocab_size", "size_bytes", "created_at"]
    search_fields = ["name", "sha256"]
    exclude = ["content"]
    readonly_fields = ["sha256", "size_bytes", "vocab_size", "special_ids", "created_by", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("content")

    def has_add_permission(self, request):
        return False  # uploaded on the tokenizers page or the API, which check the file


@admin.register(WorkloadDataset)
class WorkloadDatasetAdmin(TeamScopedAdmin):
    list_display = ["name", "format", "row_count", "turn_count", "size_bytes", "created_at"]
    list_filter = ["format"]
    search_fields = ["name", "original_filename", "sha256"]
    exclude = ["payload"]
    readonly_fields = [
        "format", "original_filename", "sha256", "size_bytes", "row_count", "turn_count", "skipped", "notes",
        "stats", "created_by", "created_at",
    ]  # fmt: skip

    def get_queryset(self, request):
        return super().get_queryset(request).defer("payload")

    def has_add_permission(self, request):
        return False  # uploaded on the datasets page or the API, which parse and check the file


def _without_blobs(versions):
    """Versions with their workload, dataset and tokenizer in one query, leaving out the stored bytes."""
    return versions.select_related("workload", "dataset", "tokenizer").defer(
        "preview", "dataset__payload", "tokenizer__content"
    )


class WorkloadVersionInline(admin.TabularInline):
    model = WorkloadVersion
    fields = VERSION_FIELDS
    readonly_fields = VERSION_FIELDS
    can_delete = False
    extra = 0
    ordering = ["-number"]

    def get_queryset(self, request):
        return _without_blobs(super().get_queryset(request))

    # The parent admin has already checked the team; versions are never added or edited here.
    def has_view_permission(self, request, obj=None):
        return True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Workload)
class WorkloadAdmin(TeamScopedAdmin):
    list_display = ["name", "archived", "created_by", "created_at", "updated_at"]
    list_filter = ["archived"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [WorkloadVersionInline]

    def has_add_permission(self, request):
        return False  # a workload starts with a validated spec: the editor or the API


@admin.register(WorkloadVersion)
class WorkloadVersionAdmin(admin.ModelAdmin):
    """Read-only: a version is what runs were measured with."""

    list_display = ["__str__", "number", "dataset", "tokenizer", "created_at"]
    list_select_related = ["workload", "dataset", "tokenizer"]
    search_fields = ["workload__name", "spec_sha256"]
    fields = ["workload", *VERSION_FIELDS]
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = _without_blobs(super().get_queryset(request))
        if request.user.is_superuser:
            return queryset
        if not is_team_admin(request):
            return queryset.none()
        return queryset.filter(workload__team=request.team)

    def has_module_permission(self, request):
        return request.user.is_superuser or is_team_admin(request)

    def has_view_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        return is_team_admin(request) and (obj is None or obj.workload.team_id == request.team.pk)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
