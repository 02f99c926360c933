"""The audit trail pages: the team's entries, filtered and paginated, and the same as a CSV download."""

from datetime import UTC, datetime

from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.accounts.models import Membership
from apps.accounts.permissions import team_view
from apps.audit.catalog import action_words, field_words, object_type_words
from apps.audit.filters import AuditEntryFilter
from apps.audit.models import AuditEntry
from llmbench.exports import Table, export_response
from llmbench.throttling import page_throttle

PAGE_SIZE = 50
CSV_COLUMNS = [
    "time_utc", "team", "who", "through", "action", "action_words", "object_type", "object_id", "object",
    "changes", "ip", "request_id",
]  # fmt: skip


def _entries(request) -> AuditEntryFilter:
    return AuditEntryFilter(request.GET, queryset=AuditEntry.objects.filter(team=request.team))


def change_lines(entry: AuditEntry) -> list[tuple[str, str]]:
    """The entry's before/after summary in words, one (what, text) per field: "before → after" for a change,
    the value alone for a field set on creation or held at deletion; fields empty on both sides are left out."""
    changes = entry.changes if isinstance(entry.changes, dict) else {}
    lines = []
    for name, pair in changes.items():
        if name.startswith("_"):  # bookkeeping (e.g. which kind of key change), already in the action
            continue
        before, after = pair if isinstance(pair, list) and len(pair) == 2 else (None, pair)
        before, after = _words(before), _words(after)
        if before == after == "–":
            continue
        if before == "–" and entry.action.endswith(".created"):
            lines.append((field_words(name), after))
        elif after == "–" and entry.action.endswith(".deleted"):
            lines.append((field_words(name), before))
        else:
            lines.append((field_words(name), f"{before} → {after}"))
    return lines


def _words(value) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{count} {name}" for name, count in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "–"
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        try:  # a stored time (ISO 8601): to the minute, in UTC like the rest of the page
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def _error_lines(filterset: AuditEntryFilter) -> list[tuple[str, list[str]]]:
    """The filter's errors under each field's label (words, not parameter names)."""
    fields = filterset.form.fields
    return [(fields[name].label if name in fields else "Filter", list(errs)) for name, errs in filterset.errors.items()]


@team_view(Membership.Role.ADMIN)
@require_GET
def entry_list(request):
    """The team's audit trail, newest first; team admins only."""
    filterset = _entries(request)
    valid = filterset.is_valid()
    page = Paginator(filterset.qs if valid else AuditEntry.objects.none(), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "entry": entry,
            "action": action_words(entry.action),
            "object_type": object_type_words(entry.object_type) if entry.object_type else "",
            "changes": change_lines(entry),
        }
        for entry in page.object_list
    ]
    context = {"filter": filterset, "page": page, "rows": rows, "errors": _error_lines(filterset)}
    template = "audit/entry_list.html#results" if request.htmx else "audit/entry_list.html"
    return render(request, template, context, status=200 if valid else 400)


@team_view(Membership.Role.ADMIN)
@require_GET
@page_throttle("exports")
def entry_export(request):
    """The filtered entries as CSV (this download is itself an entry: AuditMiddleware)."""
    filterset = _entries(request)
    if not filterset.is_valid():
        page = Paginator(AuditEntry.objects.none(), PAGE_SIZE).get_page(1)
        context = {"filter": filterset, "page": page, "rows": [], "errors": _error_lines(filterset)}
        return render(request, "audit/entry_list.html", context, status=400)
    rows = (
        (
            entry.at,
            entry.team_label,
            entry.actor_label,
            entry.get_via_display(),
            entry.action,
            action_words(entry.action),
            entry.object_type,
            entry.object_id,
            entry.object_repr,
            entry.changes,
            entry.ip,
            entry.request_id,
        )
        for entry in filterset.qs.iterator(chunk_size=2000)
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return export_response(
        "csv",
        filename=f"audit-{request.team.slug}-{stamp}.csv",
        title="Audit trail",
        meta={},
        summary=[],
        tables=[Table(name="audit", columns=CSV_COLUMNS, rows=rows)],
    )
