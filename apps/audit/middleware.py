"""The request as audit context (actor, team, address, request id); records downloads."""

import re

from apps.audit.services import record, request_context, safe_query

_FILENAME = re.compile(r"""filename\*?=(?:UTF-8'')?"?([^";]+)"?""", re.IGNORECASE)


class AuditMiddleware:
    """Makes the request the audit context while it is served, and writes "export.downloaded" for every
    successful response that is a download (Content-Disposition: attachment), on pages and in the API:
    the route, the query string (secret-looking values hidden) and the file name."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with request_context(request):
            response = self.get_response(request)
            if 200 <= response.status_code < 300 and _is_download(response):
                _record_download(request, response)
        return response


def _is_download(response) -> bool:
    return response.get("Content-Disposition", "").lstrip().lower().startswith("attachment")


def _record_download(request, response) -> None:
    match = getattr(request, "resolver_match", None)
    route = (match.view_name if match else "") or request.path_info
    found = _FILENAME.search(response.get("Content-Disposition", ""))
    filename = found.group(1).strip() if found else ""
    query = safe_query(request.META.get("QUERY_STRING", ""))
    changes = {"route": [None, route], "query": [None, query], "filename": [None, filename]}
    record(
        action="export.downloaded",
        object_type="export",
        object_id=request.path_info[:64],
        object_repr=filename or route,
        changes=changes,
        request=request,
    )
