"""The request as audit context (actor, team, address, request id); records downloads. CONTRACT STUB."""


class AuditMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
