"""Tiny, dependency-free inline SVG charts for reports (accessible: title, desc, role=img).

All text that ends up in the SVG is escaped here, so callers may pass holder-supplied labels.
"""

from __future__ import annotations

from html import escape
from typing import Sequence


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    desc: str | None = None,
    unit: str = "",
    width: int = 640,
    bar_height: int = 22,
    value_format=_fmt,
) -> str:
    """A horizontal bar chart as an inline ``<svg>`` string (empty string for no data)."""
    if not labels:
        return ""
    label_w = min(260, 12 + 7 * max(len(str(l)) for l in labels))
    plot_w = width - label_w - 90
    vmax = max((abs(v) for v in values), default=0) or 1.0
    height = 30 + bar_height * len(labels)
    uid = "c" + format(abs(hash_text(title + "".join(map(str, labels)))) % 10**10, "d")
    desc = desc or ", ".join(f"{l}: {value_format(v)}{unit}" for l, v in zip(labels, values))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-labelledby="{uid}t {uid}d" class="chart">',
        f'<title id="{uid}t">{escape(title)}</title>',
        f'<desc id="{uid}d">{escape(desc)}</desc>',
    ]
    for i, (label, v) in enumerate(zip(labels, values)):
        y = 10 + i * bar_height
        w = max(1.0, plot_w * abs(v) / vmax) if v else 0.0
        text = str(label) if len(str(label)) <= 36 else str(label)[:33] + "..."
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_height * 0.65:.1f}" text-anchor="end" '
            f'font-size="12">{escape(text)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_height - 6}" '
            f'fill="{"#2b6cb0" if v >= 0 else "#c53030"}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_height * 0.65:.1f}" font-size="12">'
            f"{escape(value_format(v) + unit)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def hash_text(s: str) -> int:
    """A deterministic small hash for element ids (not Python's per-process hash())."""
    h = 1469598103934665603
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h
