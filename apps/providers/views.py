"""Provider endpoint pages: everyone in the team sees them, team admins manage them."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.providers.forms import EndpointForm
from apps.providers.models import ProviderEndpoint
from apps.providers.prices import DEFAULT_PRICES, PRICES_AS_OF
from apps.providers.services import endpoint_save, endpoint_test
from apps.providers.urlcheck import UrlRefused


@team_view()
def endpoint_list(request):
    endpoints = ProviderEndpoint.objects.filter(team=request.team)
    context = {"endpoints": endpoints, "prices": sorted(DEFAULT_PRICES.items()), "prices_as_of": PRICES_AS_OF}
    return render(request, "providers/endpoint_list.html", context)


@team_view()
@require_http_methods(["GET", "POST"])
def endpoint_edit(request, pk: int | None = None):
    endpoint = (
        get_object_or_404(ProviderEndpoint, pk=pk, team=request.team) if pk else ProviderEndpoint(team=request.team)
    )
    if request.method == "POST":
        require_role(request, Membership.Role.ADMIN)
    form = EndpointForm(request.POST or None, instance=endpoint, team=request.team)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint_save(endpoint=form.save(commit=False), api_key=form.new_api_key())
        except UrlRefused as exc:
            form.add_error("base_url", str(exc))
        except ValueError as exc:  # urllib's own refusal of a malformed URL, e.g. an unclosed IPv6 bracket
            form.add_error("base_url", f"This is not a valid URL ({exc}).")
        else:
            messages.success(request, f"Saved the endpoint {endpoint.name}.")
            if endpoint.model_names:  # next: which catalog variant each model name is (a page of the scores app)
                return redirect("scores:served", endpoint_pk=endpoint.pk)
            return redirect("providers:list")
    status = 400 if request.method == "POST" else 200
    return render(request, "providers/endpoint_form.html", {"form": form, "endpoint": endpoint}, status=status)


@team_view(Membership.Role.ADMIN)
@require_POST
def endpoint_delete(request, pk: int):
    endpoint = get_object_or_404(ProviderEndpoint, pk=pk, team=request.team)
    endpoint.delete()
    messages.success(request, f"Deleted the endpoint {endpoint.name}.")
    return redirect("providers:list")


@team_view(Membership.Role.ADMIN)
@require_POST
def endpoint_test_view(request, pk: int):
    endpoint = get_object_or_404(ProviderEndpoint, pk=pk, team=request.team)
    ok, message = endpoint_test(endpoint=endpoint)
    (messages.success if ok else messages.error)(request, f"{endpoint.name}: {message}")
    return redirect("providers:list")
