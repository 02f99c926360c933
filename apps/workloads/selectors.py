"""Read queries the workload pages and the API share."""

from django.db.models import Count, Max, Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from apps.accounts.models import Team
from apps.workloads.models import Tokenizer, Workload, WorkloadDataset, WorkloadVersion


def latest_version_prefetch() -> Prefetch:
    """Each workload's latest version as `latest_versions` (a one-item list), without its cached preview."""
    versions = WorkloadVersion.objects.defer("preview").order_by("-number")[:1]
    return Prefetch("versions", queryset=versions, to_attr="latest_versions")


def workloads_for(team: Team, *, archived: bool | None = False) -> QuerySet[Workload]:
    """The team's workloads by name, with `version_count`, `latest_number` and `latest_versions`;
    archived ones only (True), live ones only (False, the default) or all (None)."""
    workloads = Workload.objects.filter(team=team)
    if archived is not None:
        workloads = workloads.filter(archived=archived)
    return (
        workloads.annotate(version_count=Count("versions"), latest_number=Max("versions__number"))
        .prefetch_related(latest_version_prefetch())
        .order_by("name")
    )


def workload_get(team: Team, pk) -> Workload:
    """One of the team's workloads; Http404 for another team's or none."""
    return get_object_or_404(workloads_for(team, archived=None), pk=pk)


def datasets_for(team: Team) -> QuerySet[WorkloadDataset]:
    """The team's datasets and traces, newest first, without their payloads, with `version_count`."""
    return (
        WorkloadDataset.objects.filter(team=team)
        .defer("payload")
        .annotate(version_count=Count("versions"))
        .order_by("-created_at", "-id")
    )


def tokenizers_for(team: Team) -> QuerySet[Tokenizer]:
    """The team's tokenizers by name, without their content, with `version_count`."""
    return (
        Tokenizer.objects.filter(team=team)
        .defer("content")
        .select_related("variant")
        .annotate(version_count=Count("versions"))
        .order_by("name")
    )
