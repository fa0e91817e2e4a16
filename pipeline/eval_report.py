"""The agreement report as HTML: tables, charts and the errors a codebook author should read."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from pipeline.evaluate import Agreement
from pipeline.report import template_environment


def _png(figure: object) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    return base64.b64encode(buffer.getvalue()).decode()


def charts(
    result: Agreement, curve: list[dict[str, float]] | None, threshold: float
) -> dict[str, str]:
    """Per-code F1 bars and the precision-recall curve of the threshold, as base64 PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    table = result.per_code[result.per_code["support"] > 0].sort_values("f1")
    figure, axis = plt.subplots(figsize=(7, 0.28 * len(table) + 1))
    axis.barh(table["code"], table["f1"], color="#3b6ea5")
    axis.set_xlim(0, 1)
    axis.set_xlabel("F1")
    axis.set_title("Agreement with the gold coding, per code")
    out["f1"] = _png(figure)
    plt.close(figure)
    if curve:
        figure, axis = plt.subplots(figsize=(5, 4))
        axis.plot([r["recall"] for r in curve], [r["precision"] for r in curve], marker=".")
        for r in curve:
            if abs(r["threshold"] - threshold) < 1e-9:
                axis.scatter(
                    [r["recall"]],
                    [r["precision"]],
                    color="red",
                    zorder=3,
                    label=f"threshold {threshold}",
                )
        axis.set_xlabel("recall (micro)")
        axis.set_ylabel("precision (micro)")
        axis.set_title("Precision and recall as the threshold moves")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.legend()
        out["curve"] = _png(figure)
        plt.close(figure)
    return out


def render_eval_html(
    path: Path,
    result: Agreement,
    errors: dict[str, dict[str, list[tuple[str, str]]]],
    curve: list[dict[str, float]] | None,
    settings: dict,
    title: str,
) -> None:
    env = template_environment()
    html = env.get_template("eval_report.html.j2").render(
        result=result,
        per_code=result.per_code.to_dict(orient="records"),
        errors=errors,
        curve=curve or [],
        charts=charts(result, curve, settings.get("threshold", 0.0)),
        settings=settings,
        title=title,
    )
    path.write_text(html, encoding="utf-8")
