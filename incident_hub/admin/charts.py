"""Charts for the admin pages: SVG documents drawn by pygal, served as images of their own.

A chart is its own SVG answer (`<img src=".../chart.svg">`), not markup inside the page: the pages'
Content-Security-Policy allows no inline style or script, and pygal styles its charts inline. An image
runs no script, and the chart's answer carries a policy of its own that allows only its inline styles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pygal
from pygal.style import Style

# What a chart's own answer may do: draw with its inline styles, nothing else.
CHART_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
MEDIA_TYPE = "image/svg+xml"

# Severity colours from most to least severe, read the same on every chart and page.
SEVERITY_COLOURS = ("#b71c1c", "#e65100", "#f9a825", "#1565c0", "#607d8b")
_STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#222",
    foreground_strong="#111",
    foreground_subtle="#888",
    font_family="system-ui, sans-serif",
    colors=SEVERITY_COLOURS,
    title_font_size=16,
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=12,
    value_font_size=11,
)


def _config(title: str, **options: object) -> dict[str, object]:
    return {
        "title": title,
        "style": _STYLE,
        "js": [],  # no script from a CDN (or anywhere): an image runs none anyway
        "disable_xml_declaration": False,
        "width": 720,
        "height": 320,
        "legend_at_bottom": True,
        "print_values": False,
        "show_minor_x_labels": True,
        "truncate_label": -1,
        **options,
    }


# pygal writes its configuration for its interactive script into the chart; the chart has no script.
_CONFIG_SCRIPT = re.compile(rb"<script[^>]*>.*?</script>", re.S)


def _render(chart: Any) -> bytes:
    svg = chart.render()
    return _CONFIG_SCRIPT.sub(b"", svg if isinstance(svg, bytes) else str(svg).encode())


def stacked_bars(
    title: str, x_labels: Sequence[str], series: Mapping[str, Sequence[int]], *, x_title: str, y_title: str
) -> bytes:
    """Counts per bucket, one stacked colour per series (e.g. incidents per week by severity)."""
    chart = pygal.StackedBar(**_config(title, x_title=x_title, y_title=y_title, x_label_rotation=30))
    chart.x_labels = list(x_labels)
    for name, values in series.items():
        chart.add(name, list(values))
    return _render(chart)


def line(
    title: str,
    x_labels: Sequence[str],
    values: Sequence[float | None],
    *,
    name: str,
    y_title: str,
    target: float | None = None,
) -> bytes:
    """One figure over time (e.g. MTTR per week in minutes), with its target as a flat line when given;
    a bucket with nothing to measure is a gap, never a zero."""
    chart = pygal.Line(
        **_config(
            title,
            x_title="",
            y_title=y_title,
            x_label_rotation=30,
            allow_interruptions=True,
            include_x_axis=True,
        )
    )
    chart.x_labels = list(x_labels)
    chart.add(name, list(values))
    if target is not None:
        chart.add(
            f"target {target:g}", [target] * len(x_labels), show_dots=False, stroke_style={"dasharray": "6"}
        )
    return _render(chart)


def ranked_bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    unit: str,
    colours: Sequence[str] | None = None,
    floor: float | None = None,
) -> bytes:
    """Items ranked by a figure as horizontal bars, each with its value printed (e.g. availability per
    service in %, each bar coloured by its band); `floor` starts the axis above zero so differences near
    the top stay visible."""
    options: dict[str, object] = {
        "x_title": unit,
        "print_values": True,
        "value_formatter": _short_number,
        "show_legend": False,
        "height": max(160, 80 + 28 * len(labels)),
    }
    if floor is not None:
        options["range"] = (floor, max([floor + 1, *values]))
        options["zero"] = floor  # bars grow from the floor, not from zero
    chart = pygal.HorizontalBar(**_config(title, **options))
    points = [
        {"value": value, "color": colours[i]} if colours else {"value": value}
        for i, value in enumerate(values)
    ]
    # pygal draws the first label at the bottom; the first of a ranking belongs at the top.
    chart.x_labels = list(reversed(labels))
    chart.add(title, list(reversed(points)))
    return _render(chart)


def _short_number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")
