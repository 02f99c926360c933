"""Small text helpers shared by pages, the API and reports."""


def duration_text(seconds: float | None) -> str:
    """Seconds as "42 s", "12 minutes" or "3.5 hours"; an en dash when unknown."""
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"
