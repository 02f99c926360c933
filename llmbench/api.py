"""Cross-cutting API pieces: team-scoped viewsets and related fields, form errors as 400s."""

from django import forms
from django.db.models import ProtectedError
from rest_framework import routers, serializers, viewsets
from rest_framework.exceptions import APIException, ValidationError


class TeamScopedViewSet(viewsets.ModelViewSet):
    """A ModelViewSet over a TeamOwned model: lists and lookups see only the request's team
    (another team's id is a 404) and new rows are created in it."""

    def get_queryset(self):
        return super().get_queryset().filter(team=self.request.team)

    def perform_create(self, serializer):
        serializer.save(team=self.request.team)

    def perform_destroy(self, instance):
        try:
            instance.delete()
        except ProtectedError as exc:
            names = sorted({str(type(obj)._meta.verbose_name_plural) for obj in exc.protected_objects})
            raise Conflict(
                f"Still used by {len(exc.protected_objects)} {', '.join(names)}; delete those first."
            ) from None


class Conflict(APIException):
    status_code = 409
    default_detail = "The object is still in use."
    default_code = "conflict"


class TeamScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key from a request body, accepted only when it points into the request's team."""

    def get_queryset(self):
        return super().get_queryset().filter(team=self.context["request"].team)


def raise_form_errors(form: forms.Form, names: dict[str, str] | None = None) -> None:
    """Turn an invalid Django form (query strings, uploads) into a DRF 400 naming each field; `names`
    maps a form field to the name the API body gave it."""
    if not form.is_valid():
        names = names or {}
        raise ValidationError({names.get(field, field): [str(e) for e in errs] for field, errs in form.errors.items()})


class OptionalSlashRouter(routers.SimpleRouter):
    """Routes that answer with and without a trailing slash (`/api/v1/scores/import` as documented)."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"
