"""Helpers every export uses."""

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")


def neutralize_formula(value):
    """OWASP CSV injection: a text cell starting with = + - @ tab CR or NUL gets a leading quote,
    so a spreadsheet shows it as text instead of running it. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
