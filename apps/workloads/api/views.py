"""Workloads API: workloads (PUT/PATCH add a version when the spec, dataset or tokenizer change), their versions
and previews, and the datasets and tokenizers they use (multipart uploads; the stored bytes are never returned)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from apps.accounts.models import Membership
from apps.workloads import selectors, services
from apps.workloads.api.serializers import (
    TokenizerSerializer,
    TokenizerUploadSerializer,
    WorkloadDatasetSerializer,
    WorkloadDatasetUploadSerializer,
    WorkloadPreviewRequestSerializer,
    WorkloadSerializer,
    WorkloadVersionSerializer,
)
from apps.workloads.models import Tokenizer, Workload, WorkloadDataset, WorkloadVersion
from apps.workloads.services import SpecInvalid, WorkloadInUse
from llmbench.api import Conflict
from llmbench.parsers import JSONObjectParser
from llmbench.uploads import FileRejected


class BadInput(APIException):
    """A 400 whose body is given whole ({"detail", "errors": [...]}), numbers kept as numbers; the exception
    handler adds the request id as it does to every error."""

    status_code = 400
    default_code = "invalid"

    def __init__(self, body: dict):
        super().__init__()
        self.detail = body


def spec_invalid(exc: SpecInvalid) -> BadInput:
    """{"detail", "errors": [{"field": "spec.input_tokens.max" | "dataset" | …, "message"}]}."""
    return BadInput({"detail": f"The workload is not valid: {len(exc.errors)} problem(s).", "errors": exc.items()})


def file_rejected(exc: FileRejected) -> BadInput:
    """FileRejected.as_dict(): {"detail", "errors": [{"row", "field", "message"}], "more_errors"}."""
    return BadInput(exc.as_dict())


# A 400 is either a field check of the body (DRF's {"field": ["message"]}) or one of the two shapes below, so the
# schema says "an object" and the description gives the shapes.
SPEC_INVALID = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description='Invalid: {"detail", "errors": [{"field", "message"}]}, where field is "spec.<path>" for a problem '
    'inside the spec, or dataset, tokenizer or name for a cross-check; or {"<field>": ["message"]} for a malformed body.',
)
FILE_REJECTED = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description='The file was not stored: {"detail", "errors": [{"row", "field", "message"}], "more_errors"} '
    '(row is a line number or "file"); or {"<field>": ["message"]} for a malformed form.',
)
PREVIEW = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Histograms of input and output tokens of a sample of the requests, sessions and turns, prefix "
    "sharing, what was skipped, the length basis and warnings.",
)
IN_USE = OpenApiResponse(description="Still used; the detail says by what.")


@extend_schema_view(
    create=extend_schema(responses={201: WorkloadSerializer, 400: SPEC_INVALID}),
    update=extend_schema(responses={200: WorkloadSerializer, 400: SPEC_INVALID}),
    partial_update=extend_schema(responses={200: WorkloadSerializer, 400: SPEC_INVALID}),
    destroy=extend_schema(responses={204: None, 409: IN_USE}),
    list=extend_schema(
        parameters=[OpenApiParameter("archived", bool, description="Only archived (true) or live (false) ones.")]
    ),
)
class WorkloadViewSet(viewsets.ModelViewSet):
    """Named, versioned descriptions of traffic. Creating one makes version 1; PUT and PATCH add a version when
    the spec, dataset or tokenizer change (name, description and archived are edited in place), and a run keeps
    the version it was measured with."""

    queryset = Workload.objects.none()  # the schema's model; requests use get_queryset
    serializer_class = WorkloadSerializer
    parser_classes = [JSONObjectParser]
    lookup_value_regex = "[0-9]+"
    filterset_class = None

    @property
    def write_role(self) -> str:
        # A preview of an unsaved spec changes nothing, so a viewer may ask for one despite the POST.
        return Membership.Role.VIEWER if self.action == "preview_unsaved" else Membership.Role.MEMBER

    def get_queryset(self):
        archived = self.request.query_params.get("archived") if self.action == "list" else None
        flag = {"true": True, "1": True, "false": False, "0": False}.get((archived or "").lower())
        return selectors.workloads_for(self.request.team, archived=flag)

    def _answer(self, workload_pk: int, status_code: int = 200) -> Response:
        workload = selectors.workload_get(self.request.team, workload_pk)
        return Response(self.get_serializer(workload).data, status=status_code)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            workload = services.workload_create(
                team=request.team,
                user=request.user,
                name=data["name"],
                spec=data["spec"],
                description=data.get("description", ""),
                dataset=data.get("dataset"),
                tokenizer=data.get("tokenizer"),
            )
        except SpecInvalid as exc:
            raise spec_invalid(exc) from None
        if data.get("archived"):
            services.workload_set_archived(workload=workload, archived=True)
        return self._answer(workload.pk, status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        workload = self.get_object()
        serializer = self.get_serializer(workload, data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            services.workload_update(
                workload=workload,
                user=request.user,
                spec=data.get("spec"),
                name=data.get("name"),
                description=data.get("description"),
                dataset=data.get("dataset", services.UNCHANGED),
                tokenizer=data.get("tokenizer", services.UNCHANGED),
            )
        except SpecInvalid as exc:
            raise spec_invalid(exc) from None
        if "archived" in data:
            services.workload_set_archived(workload=workload, archived=data["archived"])
        return self._answer(workload.pk)

    def destroy(self, request, *args, **kwargs):
        workload = self.get_object()
        try:
            services.workload_delete(workload=workload)
        except WorkloadInUse as exc:
            raise Conflict(f"{workload.name!r} is {exc}.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=WorkloadVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        """The workload's versions, newest first (paginated)."""
        workload = self.get_object()
        versions = workload.versions.defer("preview").select_related("created_by").order_by("-number")
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(WorkloadVersionSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("number", int, OpenApiParameter.PATH, description="The version number.")],
        responses=WorkloadVersionSerializer,
    )
    @action(detail=True, methods=["get"], url_path="versions/(?P<number>[0-9]+)", pagination_class=None)
    def version(self, request, pk=None, number=None):
        """One version of the workload by its number."""
        workload = self.get_object()
        version = get_object_or_404(workload.versions.defer("preview").select_related("created_by"), number=number)
        return Response(WorkloadVersionSerializer(version).data)

    @extend_schema(
        parameters=[OpenApiParameter("version", int, description="A version number (default: the latest).")],
        responses={200: PREVIEW, 400: SPEC_INVALID},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def preview(self, request, pk=None):
        """What the workload sends (its latest version, or `version`): computed once per version, then kept."""
        workload = self.get_object()
        versions = WorkloadVersion.objects.filter(workload=workload).select_related("dataset", "tokenizer")
        versions = versions.defer("dataset__payload", "tokenizer__content")
        number = request.query_params.get("version")
        if number:
            if not number.isdigit():
                raise serializers.ValidationError({"version": ["A version number."]})
            version = get_object_or_404(versions, number=int(number))
        else:
            version = versions.order_by("-number").first()
            if version is None:
                raise NotFound("The workload has no version.")
        try:
            return Response(services.version_preview(version))
        except SpecInvalid as exc:
            raise spec_invalid(exc) from None

    @extend_schema(request=WorkloadPreviewRequestSerializer, responses={200: PREVIEW, 400: SPEC_INVALID})
    @action(detail=False, methods=["post"], url_path="preview", pagination_class=None)
    def preview_unsaved(self, request):
        """Preview a spec that is not saved (the editor); nothing is stored. Viewers may ask too."""
        serializer = WorkloadPreviewRequestSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            result = services.workload_preview(
                spec=data["spec"], dataset=data.get("dataset"), tokenizer=data.get("tokenizer")
            )
        except SpecInvalid as exc:
            raise spec_invalid(exc) from None
        return Response(result)


class _UploadedFileViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    parser_classes = [MultiPartParser, FormParser]
    lookup_value_regex = "[0-9]+"
    filterset_class = None

    @staticmethod
    def _read(upload, size_check) -> bytes:
        try:
            size_check(upload.size)  # before reading a file that is too big into memory
        except FileRejected as exc:
            raise file_rejected(exc) from None
        return upload.read()

    def _delete(self, obj, delete) -> Response:
        try:
            delete(obj)
        except WorkloadInUse as exc:
            raise Conflict(
                f"{obj.name!r} is used by {exc.runs} workload version(s); delete those workloads first "
                "(a version a run used is kept: archive its workload instead)."
            ) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(destroy=extend_schema(responses={204: None, 409: IN_USE}))
class WorkloadDatasetViewSet(_UploadedFileViewSet):
    """Uploaded datasets and traces, parsed and checked once; a bad file is a 400 naming every bad row and
    field, and nothing is stored."""

    queryset = WorkloadDataset.objects.none()  # the schema's model; requests use get_queryset
    serializer_class = WorkloadDatasetSerializer

    def get_queryset(self):
        return selectors.datasets_for(self.request.team).select_related("created_by")

    @extend_schema(request=WorkloadDatasetUploadSerializer, responses={201: WorkloadDatasetSerializer,
                                                                      400: FILE_REJECTED})  # fmt: skip
    def create(self, request):
        """Upload a dataset or trace (multipart: file, name, format; the format is detected when not given)."""
        upload = WorkloadDatasetUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        content = self._read(data["file"], services.dataset_size_check)
        try:
            dataset = services.dataset_upload(
                team=request.team, user=request.user, name=data.get("name", ""), content=content,
                filename=data["file"].name or "", fmt=data.get("format") or None,
            )  # fmt: skip
        except FileRejected as exc:
            raise file_rejected(exc) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=dataset.pk)).data, status=201)

    def destroy(self, request, *args, **kwargs):
        return self._delete(self.get_object(), lambda obj: services.dataset_delete(dataset=obj))


@extend_schema_view(destroy=extend_schema(responses={204: None, 409: IN_USE}))
class TokenizerViewSet(_UploadedFileViewSet):
    """Uploaded Hugging Face tokenizer.json files, for token-exact lengths."""

    queryset = Tokenizer.objects.none()  # the schema's model; requests use get_queryset
    serializer_class = TokenizerSerializer

    def get_queryset(self):
        return selectors.tokenizers_for(self.request.team).select_related("created_by")

    @extend_schema(request=TokenizerUploadSerializer, responses={201: TokenizerSerializer, 400: FILE_REJECTED})
    def create(self, request):
        """Upload a tokenizer.json (multipart: file, name, variant)."""
        upload = TokenizerUploadSerializer(data=request.data, context=self.get_serializer_context())
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        content = self._read(data["file"], services.tokenizer_size_check)
        try:
            tokenizer = services.tokenizer_upload(
                team=request.team, user=request.user, name=data["name"], content=content, variant=data.get("variant")
            )
        except FileRejected as exc:
            raise file_rejected(exc) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=tokenizer.pk)).data, status=201)

    def destroy(self, request, *args, **kwargs):
        return self._delete(self.get_object(), lambda obj: services.tokenizer_delete(tokenizer=obj))
