"""The ``qcode`` command: parses arguments and calls pipeline functions and flows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.environment import configure_environment

configure_environment()

from pipeline.errors import QcodeError  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

app = typer.Typer(
    help="Code evaluation interviews against a codebook: a first pass for people to review.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CodebookOption = Annotated[Path, typer.Option("--codebook", "-c", help="Codebook YAML file.")]
ThresholdOption = Annotated[
    float | None, typer.Option(help="Minimum score for a suggestion (default 0.42).")
]
TopKOption = Annotated[
    int | None, typer.Option("--top-k", help="At most this many codes per unit.")
]
ModelOption = Annotated[
    str | None, typer.Option(help="Local sentence-transformers model folder (default: bundled).")
]


def fail(error: QcodeError) -> None:
    typer.secho(f"Error: {error.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


@app.command()
def run(
    transcripts: Annotated[Path, typer.Argument(help="Folder of .txt/.md/.docx/.vtt transcripts.")],
    codebook: CodebookOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for run outputs.")] = Path(
        "outputs"
    ),
    unit: Annotated[str | None, typer.Option(help="Coding unit: sentence, window or turn.")] = None,
    window_size: Annotated[int | None, typer.Option(help="Sentences per window unit.")] = None,
    threshold: ThresholdOption = None,
    top_k: TopKOption = None,
    model: ModelOption = None,
    code_interviewer: Annotated[
        bool | None, typer.Option("--code-interviewer", help="Also code interviewer turns.")
    ] = None,
    template_dir: Annotated[
        Path | None, typer.Option(help="Folder of your own Jinja templates.")
    ] = None,
    on_error: Annotated[
        str | None, typer.Option(help="Bad transcript: 'skip' (default) or 'stop'.")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder.")] = None,
    store: Annotated[
        Path | None, typer.Option(help="Project database (default: OUT/project.sqlite).")
    ] = None,
) -> None:
    """Segment, embed and code every transcript in a folder; write units, suggestions and
    draft summaries to OUT/<run id>/."""
    try:
        settings = Settings.from_overrides(
            unit=unit,
            window_size=window_size,
            threshold=threshold,
            top_k=top_k,
            model=model,
            code_interviewer=code_interviewer,
            template_dir=template_dir,
            on_error=on_error,
            cache_dir=cache_dir,
            store=store,
        )
        from pipeline.codebook import load_codebook
        from pipeline.ingest import find_transcripts

        load_codebook(codebook)  # fail fast, before Prefect starts
        if not find_transcripts(transcripts):
            raise QcodeError("no .txt, .md, .docx or .vtt transcripts in this folder", transcripts)
        from flows.coding import code_transcripts

        run_dir = code_transcripts(transcripts, codebook, out, settings)
    except QcodeError as error:
        fail(error)
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text())
    counts = manifest["counts"]
    typer.echo(
        f"Coded {counts['transcripts']} transcripts: {counts['codable_units']} units, "
        f"{counts['suggestions']} suggestions on {counts['coded_units']} units."
    )
    for line in manifest["skipped"]:
        typer.secho(f"Skipped {line}", fg=typer.colors.YELLOW, err=True)
    for line in manifest["warnings"]:
        typer.secho(f"Warning: {line}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"Outputs: {run_dir}")
    typer.echo(f"Draft summaries: {run_dir / 'summaries' / 'index.html'}")


@app.command("validate-codebook")
def validate_codebook(
    path: Annotated[Path, typer.Argument(help="Codebook YAML file to check.")],
) -> None:
    """Check a codebook and list its codes by group."""
    from pipeline.codebook import load_codebook

    try:
        book = load_codebook(path)
    except QcodeError as error:
        fail(error)
    typer.echo(
        f"{path}: valid, {len(book.codes)} codes in {len(book.groups)} groups "
        f"(hash {book.sha256[:12]})"
    )
    for group in book.groups:
        codes = [c for c in book.codes if c.group == group.id]
        typer.echo(f"  {group.label}: " + ", ".join(f"{c.id} ({c.kind})" for c in codes))


@app.command("code-segments")
def code_segments(
    segments: Annotated[Path, typer.Argument(help="CSV with columns segment_id,text.")],
    codebook: CodebookOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")],
    threshold: ThresholdOption = None,
    top_k: TopKOption = None,
    model: ModelOption = None,
) -> None:
    """Code pre-segmented text (e.g. open survey answers); writes segment_id,code,score rows."""
    from pipeline.assign import code_texts
    from pipeline.codebook import load_codebook
    from pipeline.embed import EmbeddingCache, load_encoder
    from pipeline.ingest import read_segments_csv

    try:
        settings = Settings.from_overrides(threshold=threshold, top_k=top_k, model=model)
        book = load_codebook(codebook)
        frame = read_segments_csv(segments)
        encoder = load_encoder(settings.model)
        cache = EmbeddingCache((settings.cache_dir or Path.cwd() / ".cache") / "embeddings.sqlite")
        coded = code_texts(
            frame["text"].tolist(), frame["segment_id"].tolist(), book, encoder, settings, cache
        )
    except QcodeError as error:
        fail(error)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    coded[["segment_id", "code", "score"]].to_csv(tmp, index=False)
    tmp.replace(out)
    typer.echo(
        f"Coded {len(frame)} segments: {len(coded)} suggestions on "
        f"{coded['segment_id'].nunique()} segments -> {out}"
    )


@app.command("eval")
def evaluate(
    gold: Annotated[Path, typer.Option("--gold", help="Gold CSV, or a folder of them.")],
    codebook: CodebookOption,
    pred: Annotated[
        Path | None,
        typer.Option(
            "--pred", help="Predictions CSV (segment_id,code); default: code the gold texts now."
        ),
    ] = None,
    transcripts: Annotated[
        Path | None,
        typer.Option(help="Transcript folder: code gold segments in context, as a run does."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics here.")] = None,
    threshold: ThresholdOption = None,
    top_k: TopKOption = None,
    model: ModelOption = None,
) -> None:
    """Agreement of machine codes with gold coding: per-code precision, recall, F1, kappa."""
    import json

    import pandas as pd

    from pipeline.assign import code_texts
    from pipeline.codebook import load_codebook
    from pipeline.embed import EmbeddingCache, load_encoder
    from pipeline.evaluate import agreement, load_gold, predictions_by_segment, read_predictions

    try:
        settings = Settings.from_overrides(threshold=threshold, top_k=top_k, model=model)
        book = load_codebook(codebook)
        frame = load_gold(gold, book)
        if pred is not None:
            predicted_frame = read_predictions(pred)
        elif transcripts is not None:
            from pipeline.evaluate import code_gold_in_context
            from pipeline.segment import load_sentencizer

            predicted_frame = code_gold_in_context(
                frame,
                transcripts,
                book,
                load_encoder(settings.model),
                load_sentencizer(),
                settings,
                EmbeddingCache((settings.cache_dir or Path.cwd() / ".cache") / "embeddings.sqlite"),
            )
        else:
            encoder = load_encoder(settings.model)
            cache = EmbeddingCache(
                (settings.cache_dir or Path.cwd() / ".cache") / "embeddings.sqlite"
            )
            predicted_frame = code_texts(
                frame["text"].tolist(), frame["segment_id"].tolist(), book, encoder, settings, cache
            )
    except QcodeError as error:
        fail(error)
    by_segment = predictions_by_segment(predicted_frame)
    result = agreement(
        frame["gold"].tolist(), [by_segment.get(str(s), []) for s in frame["segment_id"]], book.ids
    )
    table = result.per_code[result.per_code["support"] + result.per_code["predicted"] > 0]
    with pd.option_context("display.width", 120, "display.max_rows", 200):
        typer.echo(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    typer.echo(
        f"\n{result.segments} segments · micro-F1 {result.micro_f1:.3f} · macro-F1 "
        f"{result.macro_f1:.3f} · mean kappa {result.mean_kappa:.3f} · exact-set accuracy "
        f"{result.exact_set_accuracy:.3f}"
    )
    if result.confused_pairs:
        typer.echo(
            "Most confused (gold -> predicted): "
            + "; ".join(f"{g} -> {p} ({n})" for g, p, n in result.confused_pairs[:5])
        )
    if json_out is not None:
        json_out.write_text(
            json.dumps(
                {"settings": json.loads(settings.model_dump_json()), **result.as_dict()}, indent=2
            )
        )


@app.command()
def orphans(
    store: Annotated[Path, typer.Option(help="Project database.")] = Path(
        "outputs/project.sqlite"
    ),
) -> None:
    """List reviewers' decisions whose text or code is gone (kept, never dropped)."""
    from pipeline.store import Store

    if not store.exists():
        fail(QcodeError("no project database here; run 'qcode run' first", store))
    try:
        with Store(store) as project:
            resolved = project.resolved_decisions()
    except QcodeError as error:
        fail(error)
    orphaned = resolved[resolved["anchor"] == "orphaned"]
    typer.echo(f"{len(orphaned)} of {len(resolved)} decisions are orphaned.")
    for row in orphaned.itertuples():
        typer.echo(
            f"- #{row.decision_id} {row.reviewer} {row.action} {row.code_id} on "
            f"{row.transcript_id} [{row.start}-{row.end}] \"{row.text[:80]}\": {row.reason}"
        )


@app.command()
def agreement(
    store: Annotated[Path, typer.Option(help="Project database.")] = Path(
        "outputs/project.sqlite"
    ),
) -> None:
    """Human-human agreement from double-coded units in the store (blind review)."""
    from pipeline.evaluate import human_agreement
    from pipeline.store import Store

    if not store.exists():
        fail(QcodeError("no project database here; run 'qcode run' first", store))
    try:
        with Store(store) as project:
            book = project.codebook()
            pairs = human_agreement(project.resolved_decisions(book), book.ids)
    except QcodeError as error:
        fail(error)
    if not pairs:
        typer.echo("No unit has been decided by two reviewers yet.")
    for a, b, result in pairs:
        typer.echo(
            f"{a} vs {b}: {result.segments} units both decided · micro-F1 {result.micro_f1:.3f}"
            f" · mean kappa {result.mean_kappa:.3f} · exact-set {result.exact_set_accuracy:.3f}"
        )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("Interrupted; outputs of unfinished runs were not written.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
