"""One formatter for every figure on pages and in reports: separators, precision, p-values, booleans."""

import pytest

from llmbench.humanize import number_text, p_value_text, yes_no_text


@pytest.mark.parametrize(
    "value,digits,text",
    [
        (16.0, None, "16"),  # concurrency 16, not 16.0
        (200.0, None, "200"),  # max_tokens 200, not 200.0
        (72.6352, None, "72.64"),
        (1234.5, None, "1,234"),
        (123.456, None, "123.5"),
        (0.01234, None, "0.012"),
        (0.000123, None, "0.0001"),
        (1234567, None, "1,234,567"),
        (2.0, 2, "2.00"),  # money keeps its cents when asked
        (81.23, 1, "81.2"),
        (None, None, "–"),
        ("", 1, "–"),
        (float("nan"), None, "–"),
        (-0.0001, 1, "0"),  # no "-0.0"
    ],
)
def test_number_text_formats_like_a_person_writes(value, digits, text):
    """Whole numbers lose ".0", sizes get sensible precision, separators, an en dash for nothing."""
    assert number_text(value, digits) == text


@pytest.mark.parametrize("p,text", [(0.0, "< 0.001"), (0.0004, "< 0.001"), (0.001, "0.001"), (0.0432, "0.043"),
                                    (1.0, "1.000"), (None, "–")])  # fmt: skip
def test_p_values_never_print_as_zero(p, text):
    """A p-value below a thousandth reads "< 0.001", never "0" or "0.0000"."""
    assert p_value_text(p) == text


def test_booleans_read_as_words():
    """True/False/None become yes/no/–."""
    assert [yes_no_text(v) for v in (True, False, None)] == ["yes", "no", "–"]
    assert number_text(True) == "yes"
