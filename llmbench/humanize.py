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


def number_text(value, digits: int | None = None) -> str:
    """A figure as every page, table and report shows it: thousands separators, an en dash when
    missing, and `digits` decimals when given (money: 2); when `digits` is None, whole numbers
    without decimals (concurrency 16, not 16.0) and otherwise a precision that suits the size
    (1,234 · 72.6 · 3.14 · 0.012)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return yes_no_text(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN
        return "–"
    if number in (float("inf"), float("-inf")):
        return "∞" if number > 0 else "−∞"
    if digits is None:
        if number.is_integer():
            return f"{int(number):,}"
        size = abs(number)
        digits = 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 1 else 3 if size >= 0.01 else 4
    text = f"{number:,.{int(digits)}f}"
    return "0" if text.strip("-0.,") == "" else text


def p_value_text(p) -> str:
    """A p-value in words people read: "< 0.001" below a thousandth, else three decimals; never "0"."""
    if p is None or p == "":
        return "–"
    p = float(p)
    if p != p:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def yes_no_text(value) -> str:
    """A boolean in words: "yes", "no", or an en dash when unknown."""
    if value is None or value == "":
        return "–"
    return "yes" if value else "no"
