"""Charts for the theme report, as PNG bytes (matplotlib, no display needed).

Per framework group: a code x local authority heatmap of coded units, and an enabler/inhibitor
bar chart (participants raising each code, enablers to the right, inhibitors to the left).
The same PNGs are embedded in the HTML and the DOCX and written beside the Markdown.
"""

from __future__ import annotations

import io
import textwrap

from pipeline.report.themes import GroupTheme, ThemeReport

ENABLER = "#2e7d4f"
INHIBITOR = "#b23a3a"


HEATMAP_NUMBER_PT = 11  # shrunk to the DOCX's 17 cm text width: still 8 pt or more


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _label(text: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def heatmap(theme: GroupTheme, authorities: list[str]) -> bytes:
    """Coded units per code (rows) and local authority (columns)."""
    plt = _pyplot()
    rows = theme.rows
    values = [[t.by_authority.get(a, 0) for a in authorities] for t in rows]
    figure, axis = plt.subplots(
        figsize=(1.2 + 0.6 * max(len(authorities), 1), 0.9 + 0.55 * len(rows))
    )
    image = axis.imshow(values, cmap="Blues", aspect="auto", vmin=0)
    axis.set_xticks(range(len(authorities)), authorities, rotation=45, ha="right")
    axis.set_yticks(
        range(len(rows)),
        [
            f"{_label(t.code.label, 26)} ({t.code.kind[0].upper()})"
            if t.code.kind
            else _label(t.code.label, 26)
            for t in rows
        ],
    )
    top = max((v for row in values for v in row), default=0)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            axis.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                fontsize=HEATMAP_NUMBER_PT,
                color="white" if top and value > top * 0.6 else "black",
            )
    axis.set_title(f"{theme.group.label}: coded units by local authority")
    figure.colorbar(image, ax=axis, label="coded units", shrink=0.8)
    data = _png(figure)
    plt.close(figure)
    return data


def balance(theme: GroupTheme) -> bytes:
    """Participants raising each enabler (right, green) and inhibitor (left, red)."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    rows = [*theme.enablers, *theme.inhibitors]
    enabler = [True] * len(theme.enablers) + [False] * len(theme.inhibitors)
    values = [t.participants if e else -t.participants for t, e in zip(rows, enabler, strict=True)]
    figure, axis = plt.subplots(figsize=(7, 0.9 + 0.45 * len(rows)))
    positions = list(range(len(rows)))[::-1]
    axis.barh(
        positions,
        values,
        color=[ENABLER if e else INHIBITOR for e in enabler],
    )
    axis.set_yticks(positions, [_label(t.code.label, 40) for t in rows])
    axis.axvline(0, color="#444", linewidth=0.8)
    limit = max([abs(v) for v in values] + [theme.total_participants, 1])
    axis.set_xlim(-limit - 0.5, limit + 0.5)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{abs(x):.0f}"))
    axis.set_xlabel("participants raising it (inhibitors to the left, enablers to the right)")
    axis.set_title(f"{theme.group.label}: enablers against inhibitors")
    for y, v in zip(positions, values, strict=True):
        if v:
            axis.text(
                v + (0.15 if v > 0 else -0.15),
                y,
                str(abs(v)),
                va="center",
                ha="left" if v > 0 else "right",
                fontsize=8,
            )
    data = _png(figure)
    plt.close(figure)
    return data


def overview(report: ThemeReport) -> bytes:
    """Participants raising any enabler and any inhibitor, per framework group."""
    plt = _pyplot()
    groups = report.groups
    figure, axis = plt.subplots(figsize=(7, 0.9 + 0.6 * max(len(groups), 1)))
    positions = list(range(len(groups)))[::-1]
    height = 0.38
    axis.barh(
        [p + height / 2 for p in positions],
        [g.enabler_participants for g in groups],
        height,
        color=ENABLER,
        label="enablers",
    )
    axis.barh(
        [p - height / 2 for p in positions],
        [g.inhibitor_participants for g in groups],
        height,
        color=INHIBITOR,
        label="inhibitors",
    )
    axis.set_yticks(positions, [_label(g.group.label, 30) for g in groups])
    total = groups[0].total_participants if groups else 1
    axis.set_xlim(0, max(total, 1) + 0.5)
    axis.set_xlabel(f"participants raising any (of {total})")
    axis.set_title("Enablers and inhibitors by framework group")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    data = _png(figure)
    plt.close(figure)
    return data


def draw_charts(report: ThemeReport) -> dict[str, bytes]:
    """Every chart of the report, by file stem (``overview``, ``<group>-heatmap``...)."""
    charts = {"overview": overview(report)} if report.groups else {}
    for theme in report.groups:
        if report.authorities:  # none when nobody's units were reviewed yet: no empty chart
            charts[f"{theme.group.id}-heatmap"] = heatmap(theme, report.authorities)
        charts[f"{theme.group.id}-balance"] = balance(theme)
    return charts
