"""Template helpers of the score pages."""

import html
from functools import cache

from django import template
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from llmbench.humanize import number_text

register = template.Library()


@register.simple_tag
def interval_text(low, high, places: int = 1) -> str:
    """An interval in words: "0.2–1.6", or "-4.3 to 15.2" when an end is negative (a dash beside a minus sign
    reads as a range from 4.3)."""
    if low is None or high is None:
        return ""
    joiner = " to " if low < 0 or high < 0 else "–"
    return f"{number_text(low, places)}{joiner}{number_text(high, places)}"


@register.filter
def chart_data(rows, attribute: str) -> list[dict]:
    """Rows → [{label, value}] for a bar chart, e.g. leaderboard rows by average_pct; the label of a
    bar that includes simulated scores says so."""
    return [
        {
            "label": f"{row.model_name.rsplit('/', 1)[-1]} · {row.quantization}"
            + (" (simulated)" if getattr(row, "simulated", False) else ""),
            "value": round(getattr(row, attribute), 2),
        }
        for row in rows
        if getattr(row, attribute) is not None
    ]


def _e(text) -> str:
    """HTML-escaped text, quotes included (the standard library's: Django's lazy-aware escape costs more per call)."""
    return html.escape(str(text), quote=True)


@cache
def _simulated_badge() -> str:
    return " " + render_to_string("partials/_simulated_badge.html").strip()


def _marked(row) -> set[str]:
    """The benchmarks whose cell gets its own "simulated" badge: only in a row that mixes simulated
    and measured scores (a wholly simulated row carries one badge, by its name)."""
    if not row.simulated or len(row.simulated_benchmarks) == row.benchmark_count:
        return set()
    return set(row.simulated_benchmarks)


@register.simple_tag
def leaderboard_cells(row) -> str:
    """The benchmark cells of a leaderboard row, in Python: a template loop per cell was most of the
    page's rendering time (20 benchmarks × 50 rows)."""
    marked = _marked(row)
    measured = row.measured
    cells = []
    for name, value in row.scores.items():
        if value is None:
            cells.append('<td><span class="muted">–</span></td>')
            continue
        badge = _simulated_badge() if name in marked else ""
        if name in measured:
            cells.append(_measured_cell(value, measured[name], badge))
        else:
            cells.append(f"<td>{number_text(value, 2)}{badge}</td>")
    return mark_safe("".join(cells))  # number_text gives digits and separators; the badges are fixed markup


def _measured_cell(value: float, cell: dict, badge: str) -> str:
    """A score measured here: the value, a "measured" badge linking to its run, and its 95% interval."""
    low, high = cell["ci_low_pct"], cell["ci_high_pct"]
    interval = interval_text(low, high)
    title = "Measured here" + (f" on {cell['n_items']:,} items" if cell["n_items"] else "")
    title += f", 95% interval {interval}" if interval else ""
    label = f'<span class="badge measured" title="{title}">measured</span>'  # digits and fixed words
    if cell["run_url"]:
        label = f'<a href="{_e(cell["run_url"])}">{label}</a>'
    shown = f' <small class="muted">({interval})</small>' if interval else ""
    return f'<td data-origin="measured">{number_text(value, 2)} {label}{shown}{badge}</td>'


def _p_text(p: float) -> str:
    """A p-value as people read it: 0.01, 0.003, < 0.001."""
    if p < 0.001:
        return "< 0.001"
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


@register.simple_tag(takes_context=True)
def paired_summary(context, row) -> str:
    """The paired comparisons of a quantization row, one sentence each ("AWQ loses 0.9 points on GSM8K (95% CI
    0.2–1.6), McNemar p = 0.01, 24 items flipped"), with answer agreement, a note when the runs' settings differ,
    and the flipped items in an expandable list, fetched when it is opened (a page of 150 pairs carried 7,500
    item links nobody had asked for). Built with f-strings and one escape per text: format_html per piece
    was most of the page's time."""
    query = context["request"].GET.copy()
    query.pop("page", None)
    quantization, base = _e(row.quantization), _e(row.base_quantization)
    parts = []
    for benchmark, delta in row.deltas.items():
        paired = delta["paired"]
        if not paired:
            continue
        lost = paired["points_lost"]
        verb = "loses" if lost > 0 else "gains" if lost < 0 else "changes by"
        name, flipped = _e(benchmark), f"{paired['flipped_count']:,}"
        sentence = (
            f"<strong>{quantization} {verb} {number_text(abs(lost), 1)} points on {name}</strong> (95% CI "
            f"{interval_text(paired['ci_low_pts'], paired['ci_high_pts'])}), McNemar p = "
            f"{_e(_p_text(paired['mcnemar_p']))}, {flipped} items flipped ({paired['base_only']:,} right only with "
            f"{base}, {paired['quantized_only']:,} only with {quantization}) of {paired['n_items']:,}"
        )
        details = []
        if paired["agreement"] is not None:
            details.append(f"same answer on {number_text(100 * paired['agreement'], 1)}% of items")
        if paired["suite"]:
            details.append(f"suite {_e(paired['suite'])}")
        details.append(f"runs: {_run_link(paired['base_run_url'], base)} · "
                       f"{_run_link(paired['quantized_run_url'], quantization)}")  # fmt: skip
        warning = (
            f'<p class="warning">The two runs used different settings ({_e(paired["settings_note"])}): the '
            "difference mixes quantization and settings.</p>"
            if paired["settings_differ"]
            else ""
        )
        items = ""
        if paired["flipped_count"]:
            query["flipped"], query["benchmark"] = str(row.variant_id), benchmark
            url = _e("?" + query.urlencode())
            items = (
                f'<details class="flipped" hx-get="{url}" hx-trigger="toggle once" hx-target="find .flipped-list">'
                f'<summary>Flipped items ({flipped})</summary><div class="flipped-list"><a href="{url}">Show the '
                f"{flipped} flipped items</a></div></details>"
            )
        parts.append(
            f'<div class="paired" data-benchmark="{name}"><p>{sentence}.</p><p class="muted">{" · ".join(details)}'
            f"</p>{warning}{items}</div>"
        )
    return mark_safe("".join(parts))  # every text escaped with _e; numbers are digits


@register.simple_tag
def flipped_links(paired: dict) -> str:
    """Every flipped item of one paired comparison, each linked to its item page when the suite has one."""
    pattern = paired["item_url"]
    if not pattern:
        return ", ".join(str(i) for i in paired["flipped"])
    before, _, after = _e(pattern).partition("{index}")  # one escape: the indices are digits
    return mark_safe(", ".join(f'<a href="{before}{i}{after}">{i}</a>' for i in paired["flipped"]))


def _run_link(url: str | None, label: str) -> str:
    """`label` is escaped already."""
    return f'<a href="{_e(url)}">{label} run</a>' if url else f"{label} run"


@register.simple_tag
def quantization_cells(row, benchmarks) -> str:
    """The points-lost cells of a quantization row, one per benchmark shown (a dash where either
    variant has no score); the title gives both scores."""
    marked = _marked(row)
    base, quantization = _e(row.base_quantization), _e(row.quantization)
    cells = []
    for benchmark in benchmarks:
        delta = row.deltas.get(benchmark.name)
        if delta is None:
            cells.append('<td><span class="muted">–</span></td>')
            continue
        lost = delta["points_lost"]
        paired = delta.get("paired")
        if paired:
            note = (
                ' <small class="muted" title="Paired 95% interval, same items">('
                f"{interval_text(paired['ci_low_pts'], paired['ci_high_pts'])})</small>"
                ' <span class="badge measured" title="Both measured here on the same items">paired</span>'
            )
        elif "measured" in (delta.get("base_origin"), delta.get("quantized_origin")):
            note = (
                f' <small class="muted" title="Base: {_origin_text(delta["base_origin"])}; quantized: '
                f'{_origin_text(delta["quantized_origin"])} (not compared item by item)">unpaired</small>'
            )
        else:
            note = ""
        css = "worse" if lost > 0 else "better" if lost < 0 else ""
        title = f"{base} {number_text(delta['base_pct'], 2)} → {quantization} {number_text(delta['quantized_pct'], 2)}"
        badge = _simulated_badge() if benchmark.name in marked else ""
        cells.append(f'<td><span class="{css}" title="{title}">{number_text(lost, 2)}</span>{note}{badge}</td>')
    return mark_safe("".join(cells))  # texts escaped with _e; numbers are digits; badges fixed markup


def _origin_text(origin: str) -> str:
    return "measured here" if origin == "measured" else "imported"


@register.simple_tag(takes_context=True)
def sort_link(context, key: str, label: str, form) -> str:
    """A column header that sorts by `key`, toggling the order when it is already the sort key."""
    request = context["request"]
    params = request.GET.copy()
    current = (form.data.get("sort") or "average").lower()
    current_order = form.data.get("order") or ("asc" if current == "model" else "desc")
    default_order = "asc" if key == "model" else "desc"
    order = ("asc" if current_order == "desc" else "desc") if current == key.lower() else default_order
    params["sort"], params["order"] = key, order
    params.pop("page", None)
    arrow = ""
    if current == key.lower():
        arrow = " ▼" if current_order == "desc" else " ▲"
    return format_html('<a href="?{}">{}{}</a>', params.urlencode(), label, arrow)
