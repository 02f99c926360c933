"""Whether a page or API call includes simulated results: `?include_simulated=` wins, else the team's default.

Simulated results (the built-in `sim` provider, generated demo data) never mix with measurements
silently: every selector that aggregates runs, responses or scores takes the answer of
`include_simulated(request)` and leaves simulated rows out when it is False, and every row, cell,
series and export line that includes one carries a "simulated" badge.
"""

from django.http import HttpRequest

PARAM = "include_simulated"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def include_simulated(request: HttpRequest) -> bool:
    """The request's choice (`include_simulated=1|0|true|false|yes|no|on|off`), else the team's default."""
    params = getattr(request, "query_params", None) or request.GET
    raw = (params.get(PARAM) or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    team = getattr(request, "team", None)
    return bool(team is not None and team.show_simulated)
