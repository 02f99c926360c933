"""Account pages: team switcher and API tokens."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.accounts.forms import TeamSwitchForm, TokenCreateForm
from apps.accounts.models import ApiToken
from apps.accounts.permissions import team_view
from apps.accounts.services import team_switch, token_create, token_revoke


@login_required
@require_POST
def switch_team(request):
    form = TeamSwitchForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("team: a team id is required.")
    membership = team_switch(request=request, team_id=form.cleaned_data["team"])
    if membership is None:
        raise Http404("No such team.")
    messages.success(request, f"Switched to {membership.team.name}.")
    target = request.POST.get("next") or "home"
    if target != "home" and not url_has_allowed_host_and_scheme(target, {request.get_host()}):
        target = "home"
    return redirect(target)


@team_view()
def tokens(request):
    """List this user's keys for the active team and issue a new one (shown once), with an expiry and
    a scope."""
    issued_key = None
    form = TokenCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        issued = token_create(
            user=request.user,
            team=request.team,
            name=form.cleaned_data["name"],
            expires_in_days=form.cleaned_data["expires_in_days"],
            scope=form.cleaned_data["scope"],
        )
        issued_key = issued.key
        form = TokenCreateForm()
    status = 400 if request.method == "POST" and issued_key is None else 200
    user_tokens = ApiToken.objects.filter(user=request.user, team=request.team)
    return render(
        request,
        "accounts/tokens.html",
        {"form": form, "tokens": user_tokens, "issued_key": issued_key, "now": timezone.now()},
        status=status,
    )


@team_view()
@require_POST
def token_revoke_view(request, pk: int):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user, team=request.team)
    token_revoke(token=token)
    messages.success(request, f"Revoked the key “{token.name}”.")
    return redirect("accounts:tokens")
