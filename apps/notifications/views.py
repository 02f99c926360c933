"""Notification pages: everyone chooses what they receive by e-mail; team admins manage the team's channels
(create, edit, send a test, new secret, delete) and read the log of deliveries."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import team_view
from apps.notifications.events import EVENTS
from apps.notifications.filters import DeliveryFilter
from apps.notifications.forms import ChannelForm, PreferenceForm
from apps.notifications.models import Channel, Delivery, DeliveryAttempt
from apps.notifications.services import (
    channel_create,
    channel_delete,
    channel_rotate_secret,
    channel_test,
    channel_update,
    preference_events,
    preference_set,
)

PAGE_SIZE = 50


def _index_context(request, form: PreferenceForm | None = None) -> dict:
    chosen = preference_events(team_id=request.team.pk, user_id=request.user.pk)
    form = form or PreferenceForm(initial={"events": chosen})
    context = {"form": form, "chosen": [EVENTS[e] for e in chosen if e in EVENTS], "events": EVENTS}
    if request.membership.has_role(Membership.Role.ADMIN):
        context |= {"manage": True, "channels": Channel.objects.filter(team=request.team)}
    return context


@team_view()
@require_GET
def index(request):
    """What I receive by e-mail; for team admins also the team's channels."""
    return render(request, "notifications/index.html", _index_context(request))


@team_view()
@require_POST
def choices_save(request):
    """Save what I receive by e-mail (every role: it is about one's own inbox)."""
    form = PreferenceForm(request.POST)
    if not form.is_valid():
        template = "notifications/index.html#choices" if request.htmx else "notifications/index.html"
        return render(request, template, _index_context(request, form), status=400)
    preference_set(team=request.team, user=request.user, events=form.cleaned_data["events"])
    if request.htmx:
        context = _index_context(request) | {"saved": True}
        return render(request, "notifications/index.html#choices", context)
    messages.success(request, "Saved what you receive by e-mail.")
    return redirect("notifications:index")


def _channel_page(request, form: ChannelForm, channel: Channel | None, *, secret: str = "", status: int = 200):
    context = {"form": form, "channel": channel, "issued_secret": secret}
    return render(request, "notifications/channel_form.html", context, status=status)


@team_view(Membership.Role.ADMIN)
@require_http_methods(["GET", "POST"])
def channel_new(request):
    """Add a channel; a webhook's signing secret is shown once, on the answer to this form."""
    form = ChannelForm(request.POST or None, team=request.team)
    if request.method == "POST":
        if not form.is_valid():
            return _channel_page(request, form, None, status=400)
        channel, secret = channel_create(
            team=request.team, user=request.user, kind=form.cleaned_data["kind"], **form.service_fields()
        )
        messages.success(request, f"Added the channel {channel.name}.")
        if secret:
            return _channel_page(request, ChannelForm(team=request.team, instance=channel), channel, secret=secret)
        return redirect("notifications:index")
    return _channel_page(request, form, None)


@team_view(Membership.Role.ADMIN)
@require_http_methods(["GET", "POST"])
def channel_edit(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk, team=request.team)
    form = ChannelForm(request.POST or None, team=request.team, instance=channel)
    if request.method == "POST":
        if not form.is_valid():
            return _channel_page(request, form, channel, status=400)
        channel, secret = channel_update(channel=channel, **form.service_fields())
        messages.success(request, f"Saved the channel {channel.name}.")
        if secret:
            return _channel_page(request, ChannelForm(team=request.team, instance=channel), channel, secret=secret)
        return redirect("notifications:index")
    return _channel_page(request, form, channel)


@team_view(Membership.Role.ADMIN)
@require_POST
def channel_rotate(request, pk: int):
    """A new signing secret, shown once on this answer; the old one stops working at once."""
    channel = get_object_or_404(Channel, pk=pk, team=request.team, kind=Channel.Kind.WEBHOOK)
    secret = channel_rotate_secret(channel=channel)
    messages.success(request, f"The channel {channel.name} has a new signing secret; the old one no longer works.")
    return _channel_page(request, ChannelForm(team=request.team, instance=channel), channel, secret=secret)


@team_view(Membership.Role.ADMIN)
@require_POST
def channel_test_view(request, pk: int):
    """Send a test message now and say what the channel answered."""
    channel = get_object_or_404(Channel, pk=pk, team=request.team)
    delivery = channel_test(channel=channel)
    answer = f"answered {delivery.last_status_code}" if delivery.last_status_code else delivery.last_response
    if delivery.status == Delivery.Status.SENT:
        messages.success(request, f"{channel.name}: test message sent ({answer or 'accepted'}).")
    else:
        messages.error(request, f"{channel.name}: the test message failed: {answer}")
    return redirect("notifications:index")


@team_view(Membership.Role.ADMIN)
@require_POST
def channel_delete_view(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk, team=request.team)
    channel_delete(channel=channel)
    messages.success(request, f"Deleted the channel {channel.name}; its deliveries stay in the log.")
    return redirect("notifications:index")


def _error_lines(filterset: DeliveryFilter) -> list[tuple[str, list[str]]]:
    fields = filterset.form.fields
    return [(fields[name].label if name in fields else "Filter", list(errs)) for name, errs in filterset.errors.items()]


@team_view(Membership.Role.ADMIN)
@require_GET
def delivery_list(request):
    """Every delivery of the team, newest first, with each try's answer; filters by status, event, channel, dates."""
    attempts = Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("number"))
    queryset = Delivery.objects.filter(team=request.team).select_related("event").prefetch_related(attempts)
    filterset = DeliveryFilter(request.GET, queryset=queryset, request=request)
    valid = filterset.is_valid()
    page = Paginator(filterset.qs if valid else Delivery.objects.none(), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"filter": filterset, "page": page, "errors": _error_lines(filterset)}
    template = "notifications/delivery_list.html#results" if request.htmx else "notifications/delivery_list.html"
    return render(request, template, context, status=200 if valid else 400)
