"""The admin pages' charts are real charts: axes with units, every value drawn, no script or remote
resource, and a policy on their own answer that allows only their inline styles."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from incident_hub.admin import charts

SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: bytes) -> list[str]:
    root = ElementTree.fromstring(svg)
    return [" ".join(node.itertext()).strip() for node in root.iter(f"{SVG}text")]


def _is_self_contained(svg: bytes) -> bool:
    text = svg.decode()
    without_comments = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    urls = set(re.findall(r"https?://[^\"' <>]+", without_comments)) - {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }
    return not urls and "<script" not in text


def test_stacked_bars_have_axis_titles_labels_and_a_legend_per_series() -> None:
    svg = charts.stacked_bars(
        "Incidents per week",
        ["2026-11-02", "2026-11-09"],
        {"SEV1_CRITICAL": [1, 2], "SEV2_HIGH": [3, 0]},
        x_title="week of",
        y_title="incidents",
    )
    texts = _texts(svg)
    for expected in ("Incidents per week", "week of", "incidents", "2026-11-02", "2026-11-09"):
        assert expected in texts
    assert {"SEV1_CRITICAL", "SEV2_HIGH"} <= set(texts)
    assert _is_self_contained(svg)


def test_a_line_leaves_a_gap_where_nothing_was_measured_and_draws_its_target() -> None:
    svg = charts.line(
        "MTTR per week", ["w1", "w2", "w3"], [42.5, None, 20.0], name="MTTR", y_title="minutes", target=30
    )
    texts = _texts(svg)
    assert "minutes" in texts and "target 30" in texts
    root = ElementTree.fromstring(svg)
    dots = [node for node in root.iter(f"{SVG}circle") if "dot" in node.get("class", "")]
    assert len(dots) == 2  # w2 had nothing to measure: no dot at zero


def test_ranked_bars_put_the_first_item_on_top_with_its_value_and_colour() -> None:
    svg = charts.ranked_bars(
        "Availability",
        ["checkout", "search", "db"],
        [99.95, 99.2, 97.1],
        unit="%",
        colours=["#2e7d32", "#f9a825", "#b71c1c"],
        floor=95,
    )
    texts = _texts(svg)
    assert {"99.95", "99.2", "97.1", "%"} <= set(texts)
    root = ElementTree.fromstring(svg)
    labels = [
        (float(node.get("y", "0")), "".join(node.itertext()))
        for node in root.iter(f"{SVG}text")
        if "".join(node.itertext()) in ("checkout", "search", "db")
    ]
    assert [name for _, name in sorted(labels)] == ["checkout", "search", "db"]  # top to bottom
    assert "#b71c1c" in svg.decode() and "#2e7d32" in svg.decode()
    assert _is_self_contained(svg)


def test_a_chart_answer_may_use_only_its_inline_styles() -> None:
    policy = charts.CHART_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script" not in policy
