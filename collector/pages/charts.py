"""Charts drawn on the server as SVG: they work offline and need no script.

Every piece of text that reaches the markup goes through ``escape``; colours
come from the stylesheet by class, so the markup carries no inline style (the
pages' Content-Security-Policy allows none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from collector.ingest.schema import RESPONSE_STATUSES

# Ranges offered on the host page: (range seconds, step seconds).
RANGES: dict[str, tuple[int, int]] = {
    "6h": (6 * 3600, 900),
    "24h": (86400, 3600),
    "7d": (7 * 86400, 6 * 3600),
    "90d": (90 * 86400, 86400),
}
DEFAULT_RANGE = "24h"

# Stacking order (bottom first) and the CSS class of each status.
STATUS_ORDER = ("PROVIDED", *[s for s in RESPONSE_STATUSES if s != "PROVIDED"])


def status_class(status: str) -> str:
    return "s-" + status.lower().replace("_", "-") if status in RESPONSE_STATUSES else "s-other"


def _nice_ceiling(value: int) -> int:
    """1, 2, 5, 10, 20, 50... at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    exponent = 10 ** int(math.floor(math.log10(value)))
    for factor in (1, 2, 5, 10):
        if factor * exponent >= value:
            return factor * exponent
    return 10 * exponent


def _when(iso_text: str) -> datetime:
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).astimezone(UTC)


def _tick_label(moment: datetime, step: int) -> str:
    return moment.strftime("%H:%M") if step < 86400 // 4 else moment.strftime("%b %d")


def status_chart(points: Sequence[dict[str, Any]], step: int, width: int = 760, height: int = 220) -> Markup:
    """Stacked bars of reports by status, one bar per point (oldest first)."""
    left, right, top, bottom = 44, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [int(p.get("total", 0)) for p in points]
    peak = _nice_ceiling(max(totals, default=0))
    n = max(len(points), 1)
    slot = plot_w / n
    bar = max(slot * 0.8, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Reports by status, {sum(totals)} in all" data-points="{len(points)}" '
        f'data-total="{sum(totals)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    # Whole numbers only on the axis: the middle line only when the peak halves evenly.
    for fraction in (0, 0.5, 1) if peak % 2 == 0 else (0, 1):
        y = top + plot_h - fraction * plot_h
        label = int(peak * fraction)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    ticks = max(1, n // 6)
    for i, point in enumerate(points):
        x = left + i * slot + (slot - bar) / 2
        moment = _when(point["t"])
        by_status = point.get("by_status", {})
        detail = ", ".join(f"{s} {c}" for s, c in sorted(by_status.items(), key=lambda kv: -kv[1]))
        title = f"{moment:%Y-%m-%d %H:%M} UTC: {totals[i]} report{'s' if totals[i] != 1 else ''}"
        if detail:
            title += f" ({detail})"
        parts.append(f'<g class="bar"><title>{escape(title)}</title>')
        y = top + plot_h
        ordered = [s for s in STATUS_ORDER if s in by_status] + sorted(s for s in by_status if s not in STATUS_ORDER)
        for status in ordered:
            h = by_status[status] / peak * plot_h
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect class="{status_class(status)}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}"/>'
            )
        if totals[i] == 0:
            parts.append(f'<rect class="empty" x="{x:.1f}" y="{top:.1f}" width="{bar:.1f}" height="{plot_h:.1f}"/>')
        parts.append("</g>")
        if i % ticks == 0:
            cx = left + i * slot + slot / 2
            parts.append(
                f'<text class="axis" x="{cx:.1f}" y="{height - 6}" text-anchor="middle">'
                f"{escape(_tick_label(moment, step))}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(points: Sequence[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(status, CSS class, count) for the statuses present, in stacking order."""
    counts: dict[str, int] = {}
    for point in points:
        for status, count in point.get("by_status", {}).items():
            counts[status] = counts.get(status, 0) + int(count)
    ordered = [s for s in STATUS_ORDER if s in counts] + sorted(s for s in counts if s not in STATUS_ORDER)
    return [(s, status_class(s), counts[s]) for s in ordered]


def sparkline(values: Sequence[int], width: int = 120, height: int = 24) -> Markup:
    """A small bar sparkline (one bar per value, oldest first)."""
    peak = max(values, default=0)
    n = max(len(values), 1)
    slot = width / n
    total = sum(values)
    parts = [
        f'<svg class="spark" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{total} reports in the last 24 hours" data-total="{total}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{total} report{'s' if total != 1 else ''} in the last 24 hours, per hour</title>",
        f'<line class="base" x1="0" x2="{width}" y1="{height - 0.5}" y2="{height - 0.5}"/>',
    ]
    for i, value in enumerate(values):
        if value <= 0 or peak <= 0:
            continue
        h = max(value / peak * (height - 2), 1.5)
        parts.append(
            f'<rect x="{i * slot + 0.5:.1f}" y="{height - h:.1f}" width="{max(slot - 1, 1):.1f}" height="{h:.1f}"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def diagnosis_totals(points: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for point in points:
        for code, count in point.get("by_diagnosis", {}).items():
            counts[code] = counts.get(code, 0) + int(count)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
