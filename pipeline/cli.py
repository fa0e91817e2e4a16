"""The ``qcode`` command: parses arguments and calls pipeline functions and flows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.environment import configure_environment

configure_environment()

from pipeline.errors import QcodeError, SettingsError  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

app = typer.Typer(
    help="Code evaluation interviews against a codebook: a first pass for people to review.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CodebookOption = Annotated[Path, typer.Option("--codebook", "-c", help="Codebook YAML file.")]
ThresholdOption = Annotated[
    float | None, typer.Option(help="Minimum score for a suggestion (default: the setting).")
]
TopKOption = Annotated[
    int | None, typer.Option("--top-k", help="At most this many codes per unit.")
]
ClassifierOption = Annotated[
    Path | None,
    typer.Option(help="Trained coder folder (from qcode train or retrain); default zero-shot."),
]
ModelOption = Annotated[
    str | None, typer.Option(help="Local sentence-transformers model folder (default: bundled).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Any other setting as NAME=VALUE (repeatable), e.g. --set k_anonymity=5."
    ),
]

StoreLocation = Annotated[
    str,
    typer.Option(
        envvar="QCODE_STORE", help="Project database: an SQLite file or a postgresql:// URL."
    ),
]


def fail(error: QcodeError) -> None:
    typer.secho(f"Error: {error.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


def require_store(path: Path | str) -> None:
    """Stop with a message, rather than create an empty project, when there is none yet (a
    PostgreSQL URL is checked when the store opens it)."""
    from pipeline.store_pg import is_url

    if not is_url(path) and not Path(path).exists():
        fail(QcodeError("no project database here; run 'qcode run' first", path))


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """``--set name=value`` pairs; the values are checked with the other settings."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise SettingsError(f"--set '{pair}': write it as NAME=VALUE, e.g. --set top_k=2")
        if name not in Settings.model_fields:
            raise SettingsError(
                f"--set '{pair}': there is no setting '{name}' (the settings reference "
                "in the docs lists them all)"
            )
        parsed[name] = value
    return parsed


@app.command()
def run(
    transcripts: Annotated[
        Path, typer.Argument(help="Folder of .txt/.md/.docx/.vtt/.srt transcripts.")
    ],
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
        str | None,
        typer.Option(
            help="Project database: an SQLite file or a postgresql:// URL (default: "
            "OUT/project.sqlite)."
        ),
    ] = None,
    classifier: ClassifierOption = None,
    privacy: Annotated[
        str | None,
        typer.Option(help="Personal data found: warn (default), redact, stop, or off."),
    ] = None,
    privacy_names: Annotated[
        Path | None, typer.Option(help="YAML list of the project's school and place names.")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="Encoder arithmetic: bf16 (default, faster) or fp32.")
    ] = None,
    task_runner: Annotated[
        str | None,
        typer.Option(help="Where embedding and assignment run: local (default) or dask."),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(help="Scheduler of an existing Dask cluster (with --task-runner dask)."),
    ] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Units per embed-and-assign task.")] = None,
    set_: SetOption = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Keep running: code again whenever a transcript or the codebook changes "
            "(the models stay loaded, so an edit takes seconds). Ctrl-C stops.",
        ),
    ] = False,
) -> None:
    """Segment, embed and code every transcript in a folder; write units, suggestions and
    draft summaries to OUT/<run id>/."""
    try:
        explicit = {
            "privacy": privacy,
            "privacy_names": privacy_names,
            "precision": precision,
            "task_runner": task_runner,
            "dask_address": dask_address,
            "chunk_size": chunk_size,
            "unit": unit,
            "window_size": window_size,
            "threshold": threshold,
            "top_k": top_k,
            "model": model,
            "code_interviewer": code_interviewer,
            "template_dir": template_dir,
            "on_error": on_error,
            "cache_dir": cache_dir,
            "store": store,
            "classifier": classifier,
        }
        overrides = parse_settings(set_ or [])  # an option given by name wins over --set
        overrides.update({k: v for k, v in explicit.items() if v is not None})
        settings = Settings.from_overrides(**overrides)
        from pipeline.codebook import load_codebook
        from pipeline.ingest import find_transcripts

        load_codebook(codebook)  # fail fast, before Prefect starts
        if not find_transcripts(transcripts):
            raise QcodeError(
                "no .txt, .md, .docx, .vtt or .srt transcripts in this folder", transcripts
            )
        if not watch:
            _code_and_report(transcripts, codebook, out, settings)
            return
    except QcodeError as error:
        fail(error)
    from pipeline.watch import snapshot, watched_files
    from pipeline.watch import watch as watch_folder

    watch_folder(
        lambda: _code_and_report(transcripts, codebook, out, settings),
        lambda: snapshot(
            watched_files(transcripts, codebook, settings.privacy_names, settings.classifier)
        ),
        typer.echo,
        lambda line: typer.secho(line, err=True, fg=typer.colors.RED),
        ready=lambda: _ready_for_edits(transcripts, out, settings),
    )


def _ready_for_edits(transcripts: Path, out: Path, settings: Settings) -> None:
    """What a watching process does after its first run, so the first edit does not wait for
    it: load spaCy, the analyzer and the encoder, read the first run's results, the stored
    scans and every transcript's digest (``bench.edit_profile`` does the same)."""
    from pipeline.incremental import keep_saved_in_memory, remember_digests
    from pipeline.preload import cache_dir_of, finish_preloads, preload
    from pipeline.privacy import remember_findings
    from pipeline.store import run_store
    from pipeline.tune import run_settings

    preload(run_settings(settings), sentencizer=True)
    finish_preloads()
    keep_saved_in_memory()
    remember_digests(
        remember_findings(
            transcripts,
            settings.privacy,
            settings.privacy_names,
            run_store(settings.store, out),
            cache_dir_of(settings),
        )
    )


def _code_and_report(transcripts: Path, codebook: Path, out: Path, settings: Settings) -> None:
    """One run of the coding flow, and what it did, for a person."""
    from flows.coding import code_transcripts
    from pipeline.privacy import PrivacyError, PrivacyStopped

    run_dir = code_transcripts(transcripts, codebook, out, settings)
    if isinstance(run_dir, PrivacyStopped):
        raise PrivacyError(run_dir.message)
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
    from pipeline.outputs import orphans_line

    line = orphans_line(manifest.get("review", {}), run_dir)
    if line:
        typer.secho(line, fg=typer.colors.YELLOW)
    typer.echo(f"Outputs: {run_dir}")
    typer.echo(f"Draft summaries: {run_dir / 'summaries' / 'index.html'}")


@app.command()
def server(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 4200,
    runs: Annotated[
        bool,
        typer.Option(
            "--runs", help="Also run what leads start from the review page (coding, reports)."
        ),
    ] = False,
) -> None:
    """Run a local Prefect server for this project until Ctrl-C, so that each 'qcode run'
    (with PREFECT_API_URL set as printed) does not start a temporary one; with --runs, also
    the runner of runs started from the review page."""
    from pipeline.server import api_url, server_command, server_environment

    try:
        command = server_command(port)
    except QcodeError as error:
        fail(error)
    if runs:
        _serve_with_runner(port)
        return
    typer.echo(
        f"Prefect server for this project on {api_url(port)} (telemetry off, database in "
        f"./.prefect). In other terminals:\n  export PREFECT_API_URL={api_url(port)}\n"
        "then 'qcode run ...' as usual. Stop it with Ctrl-C."
    )
    import subprocess

    try:
        code = subprocess.call(command, env=server_environment(Path.cwd()))
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code=code)


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
        listed = ", ".join(f"{c.id} ({c.kind})" if c.kind else c.id for c in codes)
        typer.echo(f"  {group.label}: {listed}")


@app.command("code-segments")
def code_segments(
    segments: Annotated[
        Path,
        typer.Argument(
            help="CSV with columns segment_id,text; other columns (e.g. question) are attributes "
            "for codes scoped with applies_to."
        ),
    ],
    codebook: CodebookOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")],
    threshold: ThresholdOption = None,
    top_k: TopKOption = None,
    model: ModelOption = None,
    classifier: ClassifierOption = None,
    set_: SetOption = None,
) -> None:
    """Code pre-segmented text (e.g. open survey answers); writes segment_id,code,score rows."""
    from pipeline.assign import code_texts
    from pipeline.classify import LearnedCoding, coder_for
    from pipeline.codebook import load_codebook
    from pipeline.embed import EmbeddingCache, load_encoder
    from pipeline.ingest import read_segments_csv
    from pipeline.tune import run_settings

    try:
        overrides = parse_settings(set_ or [])  # an option given by name wins over --set
        explicit = {"threshold": threshold, "top_k": top_k, "model": model}
        overrides.update({k: v for k, v in explicit.items() if v is not None})
        settings = run_settings(Settings.from_overrides(**overrides, classifier=classifier))
        book = load_codebook(codebook)
        frame = read_segments_csv(segments)
        columns = [c for c in frame.columns if c not in ("segment_id", "text")]
        for name in book.scoped_by:
            if name not in columns:
                typer.secho(
                    f"Warning: {segments} has no '{name}' column, so codes scoped to a "
                    f"'{name}' (applies_to) are never suggested",
                    fg=typer.colors.YELLOW,
                    err=True,
                )
        encoder = load_encoder(settings.model)
        cache = EmbeddingCache((settings.cache_dir or Path.cwd() / ".cache") / "embeddings.sqlite")
        coder = coder_for(book, encoder, settings, cache, classifier)
        coded = code_texts(
            frame["text"].tolist(),
            frame["segment_id"].tolist(),
            book,
            encoder,
            settings,
            cache,
            coder,
            attributes=frame[columns].to_dict("records"),
        )
    except QcodeError as error:
        fail(error)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    # With a trained coder, the probability that made each decision goes beside the score.
    columns = ["segment_id", "code", "score"]
    if isinstance(coder, LearnedCoding) and "probability" in coded.columns:
        columns.append("probability")
    coded[columns].to_csv(tmp, index=False)
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
    html: Annotated[
        Path | None, typer.Option(help="Write an HTML report with charts and errors here.")
    ] = None,
    threshold: ThresholdOption = None,
    top_k: TopKOption = None,
    model: ModelOption = None,
    classifier: ClassifierOption = None,
) -> None:
    """Agreement of machine codes with gold coding: per-code precision, recall, F1, kappa;
    micro and macro F1, Krippendorff's alpha, exact-set accuracy, confused pairs."""
    import json

    import pandas as pd

    from pipeline.classify import coder_for
    from pipeline.codebook import load_codebook
    from pipeline.embed import EmbeddingCache, load_encoder
    from pipeline.evaluate import (
        agreement,
        code_gold,
        error_examples,
        load_gold,
        predictions_by_segment,
        read_predictions,
        shown,
        threshold_curve,
        unknown_predicted_codes,
    )

    scores = None
    unknown: dict[str, int] = {}
    from pipeline.tune import run_settings

    try:
        settings = run_settings(
            Settings.from_overrides(
                threshold=threshold, top_k=top_k, model=model, classifier=classifier
            )
        )
        book = load_codebook(codebook)
        frame = load_gold(gold, book, need_text=pred is None)
        if pred is not None:
            predicted_frame = read_predictions(pred)
            unknown = unknown_predicted_codes(predicted_frame, book)
            predicted_frame["code"] = predicted_frame["code"].map(lambda c: book.renamed.get(c, c))
        else:
            encoder = load_encoder(settings.model)
            nlp = None
            if transcripts is not None:
                from pipeline.segment import load_sentencizer

                nlp = load_sentencizer()
            cache = EmbeddingCache(
                (settings.cache_dir or Path.cwd() / ".cache") / "embeddings.sqlite"
            )
            predicted_frame, scores = code_gold(
                frame,
                book,
                encoder,
                settings,
                cache,
                transcripts,
                nlp,
                coder_for(book, encoder, settings, cache, classifier),
            )
    except QcodeError as error:
        fail(error)
    by_segment = predictions_by_segment(predicted_frame)
    ids = [str(s) for s in frame["segment_id"]]
    predicted = [by_segment.get(s, []) for s in ids]
    code_ids = book.ids + list(unknown)  # codes not in the codebook count as wrong
    result = agreement(frame["gold"].tolist(), predicted, code_ids)
    if unknown:
        typer.secho(
            f"Warning: {len(unknown)} predicted code(s) are not in {codebook} and count as "
            "wrong: " + ", ".join(f"{c} ({n} rows)" for c, n in unknown.items()),
            fg=typer.colors.YELLOW,
            err=True,
        )
    table = result.per_code[result.per_code["support"] + result.per_code["predicted"] > 0]
    with pd.option_context("display.width", 120, "display.max_rows", 200):
        typer.echo(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    typer.echo(
        f"\n{result.segments} segments · micro-F1 {shown(result.micro_f1)} · macro-F1 "
        f"{result.macro_f1:.3f} · mean kappa {shown(result.mean_kappa)} · Krippendorff's alpha "
        f"{shown(result.alpha)} · exact-set accuracy {result.exact_set_accuracy:.3f}"
    )
    if result.confused_pairs:
        typer.echo(
            "Most confused (gold -> predicted): "
            + "; ".join(f"{g} -> {p} ({n})" for g, p, n in result.confused_pairs[:5])
        )
    errors = error_examples(
        ids, frame["text"].tolist(), frame["gold"].tolist(), predicted, code_ids
    )
    curve = (
        threshold_curve(scores, ids, frame["gold"].tolist(), book.ids, settings)
        if scores is not None and classifier is None
        else None
    )
    used = {
        "threshold": settings.threshold,
        "top_k": settings.top_k,
        "model": settings.model,
        "classifier": str(classifier) if classifier else "none (zero-shot)",
        "in context": transcripts is not None,
    }
    if json_out is not None:
        json_out.write_text(
            json.dumps(
                {
                    "settings": used,
                    **result.as_dict(),
                    "unknown_predicted_codes": unknown,
                    "threshold_curve": curve,
                    "errors": errors,
                },
                indent=2,
            )
        )
    if html is not None:
        from pipeline.eval_report import render_eval_html

        render_eval_html(html, result, errors, curve, used, f"Agreement with {gold.name}")
        typer.echo(f"Report: {html}")


@app.command()
def orphans(
    store: StoreLocation = "outputs/project.sqlite",
    confirm: Annotated[
        int | None,
        typer.Option(
            help="Confirm that this decision (shown as 'moved — confirm') belongs to the "
            "passage offered; needs --reviewer."
        ),
    ] = None,
    reviewer: Annotated[
        str | None, typer.Option(help="Your name, with --confirm: who confirmed the move.")
    ] = None,
) -> None:
    """List reviewers' decisions whose text or code is gone (kept, never dropped), and those
    whose move awaits a person ("moved — confirm": a typo fix, or a text that now appears
    twice). --confirm N --reviewer NAME applies one there (recorded as a note)."""
    from pipeline.decisions import CONFIRM_SOURCE, awaiting_confirmation, confirmation
    from pipeline.store import NewDecision, Store

    require_store(store)
    try:
        with Store(store) as project:
            if confirm is not None:
                if not (reviewer or "").strip():
                    raise QcodeError("--confirm needs --reviewer NAME: who confirmed the move")
                unit_id, memo = confirmation(project.resolved_decisions(), confirm)
                project.decide(reviewer, [NewDecision(unit_id, "", "note", memo)], CONFIRM_SOURCE)
                typer.echo(
                    f"Decision {confirm} now applies to unit {unit_id} (confirmed by {reviewer})."
                )
                return
            resolved = project.resolved_decisions()
    except QcodeError as error:
        fail(error)
    orphaned = resolved[resolved["anchor"] == "orphaned"]
    waiting = awaiting_confirmation(resolved)
    typer.echo(
        f"{len(orphaned)} of {len(resolved)} decisions are orphaned"
        + (f" ({len(waiting)} moved — confirm)." if len(waiting) else ".")
    )
    for row in orphaned.itertuples():
        typer.echo(
            f"- #{row.decision_id} {row.reviewer} {row.action} {row.code_id} on "
            f'{row.transcript_id} [{row.start}-{row.end}] "{row.text[:80]}": {row.reason}'
        )
        if row.Index in waiting.index:
            typer.echo(
                f"  to apply it there: qcode orphans --confirm {row.decision_id} --reviewer NAME"
            )


@app.command()
def agreement(
    store: StoreLocation = "outputs/project.sqlite",
) -> None:
    """Human-human agreement from double-coded units in the store (blind review).

    Only units both people reviewed count (every suggested code decided, or marked done); a
    rejection ("no code") counts as a decision. Per code: Cohen's kappa (undefined when neither
    coder varied), Krippendorff's alpha and percent agreement."""
    from pipeline.evaluate import human_agreement, shown
    from pipeline.store import Store

    require_store(store)
    try:
        with Store(store) as project:
            book = project.codebook()
            pairs = human_agreement(
                project.resolved_decisions(book), book.ids, project.units(), project.suggestions()
            )
    except QcodeError as error:
        fail(error)
    if not pairs:
        typer.echo("No unit has been reviewed by two reviewers yet.")
    for a, b, result in pairs:
        undefined = (
            f" ({result.kappa_undefined} of {result.averaged_codes} codes: undefined, neither "
            "coder varied)"
            if result.kappa_undefined
            else ""
        )
        typer.echo(
            f"{a} vs {b}: {result.segments} units both reviewed · micro-F1 "
            f"{shown(result.micro_f1)} · macro-F1 {result.macro_f1:.3f} · mean kappa "
            f"{shown(result.mean_kappa)}{undefined} · Krippendorff's alpha {shown(result.alpha)}"
            f" · agreement {shown(result.percent_agreement)} · exact-set "
            f"{result.exact_set_accuracy:.3f}"
        )
        used = result.per_code[result.per_code["support"] + result.per_code["predicted"] > 0]
        if len(used):
            width = max(len("code"), *(len(c) for c in used["code"]))
            typer.echo(
                f"  {'code':<{width}}  {a[:8]:>8}  {b[:8]:>8}  both  kappa      alpha"
                "      agreement"
            )
            for row in used.itertuples():
                typer.echo(
                    f"  {row.code:<{width}}  {row.support:>8}  {row.predicted:>8}  {row.both:>4}  "
                    f"{shown(row.kappa):<9}  {shown(row.alpha):<9}  {shown(row.agreement)}"
                    + (f"  ({row.note})" if row.note else "")
                )


@app.command("export-sheet")
def export_sheet_command(
    out: Annotated[
        Path, typer.Argument(help="Sheet to write: .xlsx (recommended) or .csv (UTF-8).")
    ],
    store: StoreLocation = "outputs/project.sqlite",
    transcript: Annotated[
        list[str] | None,
        typer.Option("--transcript", "-t", help="Only this interview id (repeat for more)."),
    ] = None,
    unreviewed: Annotated[
        bool, typer.Option("--unreviewed", help="Only units nobody has decided on yet.")
    ] = False,
    reviewer: Annotated[
        str | None,
        typer.Option(
            help="A sheet for this reviewer alone (double coding): only their decisions are "
            "shown, and only theirs can conflict with it."
        ),
    ] = None,
) -> None:
    """Write a review sheet of the latest run's units with the machine's codes, for people to
    fill in (decision, final_codes, memo, reviewer) and bring back with import-sheet."""
    from pipeline.interop.sheets import export_sheet, open_store

    try:
        with open_store(store) as project:
            result = export_sheet(project, out, transcript, unreviewed, reviewer)
    except QcodeError as error:
        fail(error)
    typer.echo(result.summary())


@app.command("import-sheet")
def import_sheet_command(
    sheet: Annotated[Path, typer.Argument(help="Filled-in review sheet (.xlsx or .csv).")],
    store: StoreLocation = "outputs/project.sqlite",
    reviewer: Annotated[
        str | None, typer.Option(help="Reviewer name for rows whose reviewer cell is blank.")
    ] = None,
) -> None:
    """Record the decisions of a filled-in review sheet. Every row is checked first: any
    problem and nothing is imported. Units decided in the project since the export are
    conflicts: they are listed and not overwritten, the other rows are imported, and the exit
    code is still 0."""
    from pipeline.interop.sheets import import_sheet, open_store

    try:
        with open_store(store) as project:
            report = import_sheet(project, sheet, reviewer)
    except QcodeError as error:
        fail(error)
    typer.echo(report.summary())


@app.command()
def train(
    gold: Annotated[Path, typer.Option("--gold", help="Gold CSV (or folder) of people's coding.")],
    codebook: CodebookOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained coder.")],
    transcripts: Annotated[
        Path | None,
        typer.Option(help="Transcript folder: learn from gold segments in context, as runs code."),
    ] = None,
    target_precision: Annotated[
        float | None,
        typer.Option(help="Choose thresholds for this precision instead of the best F1."),
    ] = None,
    model: ModelOption = None,
    set_: SetOption = None,
) -> None:
    """Learn from a gold CSV outside any project; use it with --classifier."""
    from pipeline.classify import train_from_labelled, training_recipe, tune_encoder
    from pipeline.codebook import load_codebook
    from pipeline.embed import EmbeddingCache, embed_texts, load_encoder
    from pipeline.evaluate import gold_in_context, load_gold

    try:
        overrides = parse_settings(set_ or [])
        if model is not None:
            overrides["model"] = model
        settings = Settings.from_overrides(**overrides)
        book = load_codebook(codebook)
        frame = load_gold(gold, book)
        recipe = training_recipe(settings)
        cache = EmbeddingCache((settings.cache_dir or Path.cwd() / ".cache") / "embeddings.sqlite")
        encoder = tune_encoder(
            load_encoder(settings.model),
            frame["text"].tolist(),
            frame["gold"].tolist(),
            book,
            recipe,
            out,
        )
        if transcripts is not None:
            from pipeline.segment import load_sentencizer

            vectors, _ = gold_in_context(
                frame, transcripts, encoder, load_sentencizer(), settings, cache
            )
        else:
            vectors, _ = embed_texts(frame["text"].tolist(), encoder, cache, settings.batch_size)
        coder = train_from_labelled(
            vectors,
            frame["gold"].tolist(),
            book,
            encoder,
            settings,
            cache,
            target_precision,
            texts=frame["text"].tolist(),
            recipe=recipe,
        )
        coder.info["trained_from"] = {"gold": str(gold), "segments": len(frame)}
        coder.save(out)
    except QcodeError as error:
        fail(error)
    learned = coder.info["learned_codes"]
    typer.echo(
        f"Trained on {len(frame)} segments: own models for {len(learned)} of {len(book.ids)} "
        f"codes ({', '.join(learned) or 'none yet'}); the rest stay zero-shot. Saved to {out}"
    )


@app.command()
def retrain(
    store: StoreLocation = "outputs/project.sqlite",
    out: Annotated[
        Path | None, typer.Option(help="Folder for the coder (default: beside the store).")
    ] = None,
    target_precision: Annotated[
        float | None,
        typer.Option(help="Choose thresholds for this precision instead of the best F1."),
    ] = None,
    set_: SetOption = None,
) -> None:
    """Learn from reviewers' decisions in the store (a Prefect flow)."""
    require_store(store)
    try:
        from flows.training import retrain_from_decisions

        settings = Settings.from_overrides(**parse_settings(set_ or []))
        folder = retrain_from_decisions(store, out, settings, target_precision)
    except QcodeError as error:
        fail(error)
    typer.echo(f"Trained coder saved to {folder}; use it with: qcode run ... --classifier {folder}")


def _serve_with_runner(port: int) -> None:
    """``qcode server --runs``: the server, then the runner of the page's runs; both stop on
    Ctrl-C (or when either stops)."""
    import time

    from pipeline.server import api_url, start_runner, start_server, stop_on_signals, stop_server

    typer.echo(f"Starting the Prefect server on {api_url(port)} (up to a minute) ...")
    log = Path.cwd() / ".prefect" / "server.log"
    log.parent.mkdir(exist_ok=True)
    try:
        server_process = start_server(Path.cwd(), port, log=log)
    except QcodeError as error:
        fail(error)
    runner = start_runner(Path.cwd(), port, log=log.with_name("runner.log"))
    typer.echo(
        f"Prefect server and runner for this project on {api_url(port)} (logs in "
        "./.prefect/server.log and runner.log). Start the review page with\n"
        f"  qcode review --prefect-api {api_url(port)} --run-transcripts DIR --run-codebook FILE"
        "\nStop both with Ctrl-C."
    )
    code = 0
    try:
        with stop_on_signals():  # Ctrl-C or a plain kill stops both
            while runner.poll() is None and server_process.poll() is None:
                time.sleep(1)
            code = 1  # one of them stopped by itself
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(runner, server_process)
    raise typer.Exit(code=code)


@app.command()
def review(
    store: Annotated[
        str,
        typer.Option(
            envvar="QCODE_STORE",
            help="Project database to review: an SQLite file or a postgresql:// URL.",
        ),
    ] = "outputs/project.sqlite",
    host: Annotated[
        str,
        typer.Option(help="Interface to listen on; any other than loopback needs accounts."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="QCODE_REVIEW_TOKEN",
            help="Access token every browser must present (open the page with ?token=...).",
        ),
    ] = None,
    blind: Annotated[
        bool,
        typer.Option("--blind", help="Double coding: each reviewer sees only their own decisions."),
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Embedding cache the runs used, for quote ranking (default ./.cache)."),
    ] = None,
    trusted_proxy: Annotated[
        str | None,
        typer.Option(
            help="Address of a reverse proxy in front of the page: only its X-Forwarded-For "
            "is believed (default: none is)."
        ),
    ] = None,
    prefect_api: Annotated[
        str,
        typer.Option(
            envvar="PREFECT_API_URL",
            help="The Prefect server of 'qcode server --runs', for runs started from the page.",
        ),
    ] = "http://127.0.0.1:4200/api",
    run_transcripts: Annotated[
        list[Path] | None,
        typer.Option(help="A transcripts folder leads may code from the page (repeatable)."),
    ] = None,
    run_codebook: Annotated[
        list[Path] | None,
        typer.Option(help="A codebook leads may code with from the page (repeatable)."),
    ] = None,
    run_out: Annotated[
        Path, typer.Option(help="Folder for the outputs of runs started from the page.")
    ] = Path("outputs"),
) -> None:
    """Open the local review page: accept, reject or change the machine's suggestions (and,
    with --run-transcripts and --run-codebook, let leads start runs and report drafts)."""
    from pipeline.review import serve

    try:
        runs = None
        if run_transcripts or run_codebook:
            from pipeline.team_runs import run_choices

            runs = run_choices(
                prefect_api, run_transcripts or [], run_codebook or [], run_out, store, cache_dir
            )
        serve(
            store,
            host=host,
            port=port,
            token=token,
            blind=blind,
            cache_dir=cache_dir,
            trusted_proxy=trusted_proxy,
            runs=runs,
        )
    except QcodeError as error:
        fail(error)


store_app = typer.Typer(help="The project database: move it between SQLite and PostgreSQL.")
app.add_typer(store_app, name="store")
user_app = typer.Typer(help="Accounts for the served review page (a team's project).")
app.add_typer(user_app, name="user")


@store_app.command("copy")
def store_copy(
    source: Annotated[
        str, typer.Argument(help="Project to copy: SQLite file or postgresql:// URL.")
    ],
    destination: Annotated[
        str, typer.Argument(help="New, empty destination: SQLite file or postgresql:// URL.")
    ],
) -> None:
    """Copy a whole project to another database, then verify it row for row."""
    from pipeline.store import Store
    from pipeline.store_copy import copy_store
    from pipeline.store_pg import is_url

    if not is_url(source):
        require_store(Path(source))
    if not is_url(destination) and Path(destination).exists():
        fail(QcodeError("the destination file exists: copy into a new file", destination))
    try:
        with Store(source) as src, Store(destination) as dest:
            report = copy_store(src, dest)
    except QcodeError as error:
        fail(error)
    typer.echo(report.summary())


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The person's name (decisions are signed with it).")],
    role: Annotated[str, typer.Option(help="lead, reviewer or reader.")],
    store: StoreLocation = "outputs/project.sqlite",
    blind: Annotated[
        bool,
        typer.Option("--blind", help="Reviewer sees only their own decisions (double coding)."),
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Add an account; the password is asked for (or read from stdin), never an argument."""
    import sys

    from pipeline.accounts import add_user
    from pipeline.store import Store
    from pipeline.store_pg import is_url

    if not is_url(store):
        require_store(Path(store))
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with Store(store) as project:
            account = add_user(project, name, role, password, blind=blind)
    except QcodeError as error:
        fail(error)
    typer.echo(f"Added {account.role} '{account.name}'{' (blind coding)' if blind else ''}.")


@app.command("check-privacy")
def check_privacy(
    transcripts: Annotated[Path, typer.Argument(help="Folder of transcripts to check.")],
    names: Annotated[
        Path | None,
        typer.Option(
            help="YAML list of the project's school and place names (default: "
            "privacy_names.yaml in the folder, if there is one)."
        ),
    ] = None,
    store: Annotated[
        Path | None, typer.Option(help="Project database (false-alarm marks, scan cache).")
    ] = None,
    redact_to: Annotated[
        Path | None, typer.Option(help="Write redacted copies of the transcripts here.")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Cache folder, shared with 'qcode run' (default: .cache): what NER found in "
            "each stretch of text, under a hash of it, so a second check of an edited "
            "transcript analyses only what changed. It holds no names."
        ),
    ] = None,
) -> None:
    """Find personal data left in transcripts (names, emails, phones, postcodes, schools,
    places, addresses, handles, dates of birth, staff and NI numbers) in every part that can
    reach an output; exits 1 if any is found, 2 if a file could not be read as a transcript."""
    from pipeline.ingest import read_transcripts
    from pipeline.privacy import (
        apply_policy,
        load_project_names,
        names_file,
        ner_cache,
        raw_transcript,
        redacted_source,
        scan_transcripts,
        shared_analyzer,
    )
    from pipeline.store import PrivacyMarks, Store

    unreadable: list[str] = []
    try:
        project_names = load_project_names(names_file(names, transcripts))
        found, problems = read_transcripts(transcripts)
        if not found and not problems:
            raise QcodeError("no .txt, .md, .docx or .vtt transcripts in this folder", transcripts)
        # A file that is not a readable transcript is still checked, as raw text.
        raw = []
        for problem in problems:
            if problem.severity != "skipped":
                continue
            unreadable.append(str(problem))
            try:
                raw.append(raw_transcript(Path(problem.path)))
            except (QcodeError, OSError) as error:
                unreadable[-1] += f" (its text could not be checked: {error})"
        project = Store(store) if store is not None else None
        marks = PrivacyMarks(project) if project is not None else None
        folder = cache_dir or Path.cwd() / ".cache"  # where 'qcode run' keeps its caches
        folder.mkdir(parents=True, exist_ok=True)
        cache = ner_cache(folder / "ner.sqlite")
        try:
            findings = scan_transcripts(
                found + raw, shared_analyzer, project_names, marks, cache=cache
            )
        finally:
            cache.close()
    except QcodeError as error:
        fail(error)
    for finding in findings:
        typer.echo(str(finding))
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.kind] = counts.get(finding.kind, 0) + 1
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing"
    typer.echo(f"{len(found) + len(raw)} files checked: {summary} found.")
    if redact_to is not None:
        redact_to.mkdir(parents=True, exist_ok=True)
        from pipeline.paths import safe_file_stem

        for transcript in apply_policy(found, findings, "redact"):
            (redact_to / f"{safe_file_stem(transcript.transcript_id)}.md").write_text(
                redacted_source(transcript), encoding="utf-8"
            )
        typer.echo(f"Redacted copies: {redact_to}")
    if unreadable:
        for line in unreadable:
            typer.secho(f"Not readable as a transcript: {line}", fg=typer.colors.RED, err=True)
        typer.secho(
            f"{len(unreadable)} file(s) could not be read as transcripts: fix them (see above) "
            "and check again; their raw text was checked for personal data where possible.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=2)
    if findings:
        raise typer.Exit(code=1)


@app.command("false-alarm")
def false_alarm(
    text: Annotated[str, typer.Argument(help="The exact text that is not personal data.")],
    reviewer: Annotated[str, typer.Option(help="Your name: the mark is recorded with it.")],
    store: Annotated[Path, typer.Option(help="Project database.")] = Path("outputs/project.sqlite"),
    transcript: Annotated[
        str, typer.Option(help="Only in this interview (default: in all of them).")
    ] = "*",
    note: Annotated[str, typer.Option(help="Why it is not personal data.")] = "",
) -> None:
    """Mark a privacy finding as a false alarm, so runs leave that text unredacted."""
    from pipeline.store import PrivacyMarks, Store

    try:
        with Store(store) as project:
            PrivacyMarks(project).mark_false_alarm(reviewer, text, transcript, note=note)
    except QcodeError as error:
        fail(error)
    where = "every interview" if transcript == "*" else f"interview {transcript}"
    typer.echo(f"Recorded: '{text}' is not personal data in {where} (marked by {reviewer}).")


AttributionOption = Annotated[
    str | None,
    typer.Option(
        help="Attribution format from attributes, e.g. '{role} – {local_authority} – "
        "{workstream}' (or Jinja)."
    ),
]
KOption = Annotated[
    int | None,
    typer.Option("--k", help="Flag quotes whose attribution fewer than k participants share."),
]


@app.command()
def quotes(
    code: Annotated[
        list[str] | None, typer.Option("--code", help="Quote this code (repeat: any of them).")
    ] = None,
    expr: Annotated[
        str | None,
        typer.Option(help="Codes with AND, OR, NOT and parentheses, e.g. 'ts.trust AND NOT x'."),
    ] = None,
    role: Annotated[list[str] | None, typer.Option(help="Only participants in this role.")] = None,
    authority: Annotated[
        list[str] | None, typer.Option(help="Only participants in this local authority.")
    ] = None,
    workstream: Annotated[
        list[str] | None, typer.Option(help="Only participants in this workstream.")
    ] = None,
    network: Annotated[
        list[str] | None, typer.Option(help="Only participants in this network.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many quotes.")] = 5,
    fmt: Annotated[str, typer.Option("--format", help="md, docx, csv or json.")] = "md",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="File to write (default: print; docx needs it)."),
    ] = None,
    store: Annotated[Path, typer.Option(help="Project database.")] = Path("outputs/project.sqlite"),
    include_suggestions: Annotated[
        bool,
        typer.Option("--include-suggestions", help="Also quote unreviewed machine suggestions."),
    ] = False,
    max_chars: Annotated[
        int | None, typer.Option(help="Trim longer quotes at a sentence end (default 400).")
    ] = None,
    per_participant: Annotated[int, typer.Option(help="At most this many per participant.")] = 1,
    attribution_format: AttributionOption = None,
    k: KOption = None,
    template_dir: Annotated[
        Path | None, typer.Option(help="Folder of your own templates (quotes.md.j2, quotes.docx).")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder.")] = None,
) -> None:
    """Quotes for a code or a combination of codes, filtered by participant attributes:
    accepted first, diverse across people, verbatim from the transcripts."""
    from pipeline.report.batch import quote_bank
    from pipeline.report.errors import ReportError
    from pipeline.report.quotes import QuoteRequest
    from pipeline.report.render import QUOTE_FORMATS, parse_formats, render_quotes, write_atomic

    try:
        settings = Settings.from_overrides(
            quote_max_chars=max_chars,
            attribution_format=attribution_format,
            k_anonymity=k,
            template_dir=template_dir,
            cache_dir=cache_dir,
        )
        (chosen,) = parse_formats(fmt, QUOTE_FORMATS)
        if chosen == "docx" and out is None:
            raise ReportError("--format docx needs a file to write: add --out quotes.docx")
        request = QuoteRequest(
            codes=tuple(code or ()),
            expr=expr or "",
            filters={
                "role": tuple(role or ()),
                "local_authority": tuple(authority or ()),
                "workstream": tuple(workstream or ()),
                "network": tuple(network or ()),
            },
            limit=limit,
            include_suggestions=include_suggestions,
            max_chars=settings.quote_max_chars,
            per_participant=per_participant,
            attribution_format=settings.attribution_format,
            k=settings.k_anonymity,
        )
        result = quote_bank(store, request, settings)
        data = render_quotes(result, chosen, settings.template_dir)
    except QcodeError as error:
        fail(error)
    if out is not None:
        write_atomic(out, data)
    else:
        sys.stdout.write(data.decode("utf-8-sig"))
    flagged = sum(q.identifiable for q in result.quotes)
    typer.echo(
        f"{len(result.quotes)} quotes of {result.matched_units} matching units "
        f"({result.matched_participants} participants); {flagged} flagged "
        f"(k = {request.k}); diversity by {result.diversity}"
        + (f"; written to {out}" if out is not None else ""),
        err=True,
    )
    for warning in result.warnings:
        typer.secho(f"Warning: {warning}", fg=typer.colors.YELLOW, err=True)


@app.command()
def report(
    store: Annotated[Path, typer.Option(help="Project database.")] = Path("outputs/project.sqlite"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the reports.")] = Path(
        "reports"
    ),
    fmt: Annotated[
        str, typer.Option("--format", help="Comma-separated: md, html, docx.")
    ] = "md,html,docx",
    include_suggestions: Annotated[
        bool,
        typer.Option(
            "--include-suggestions", help="Also count unreviewed suggestions (marked as such)."
        ),
    ] = False,
    template_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of your own templates (theme_report.*.j2, theme_report.docx)."),
    ] = None,
    attribution_format: AttributionOption = None,
    k: KOption = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder.")] = None,
) -> None:
    """Draft theme reports from the current state of the store (accepted codings by default):
    per code and per framework group, with quotes, matrices and charts, in Markdown, HTML and
    DOCX."""
    from pipeline.report.batch import draft_reports
    from pipeline.report.render import FORMATS, parse_formats

    try:
        settings = Settings.from_overrides(
            attribution_format=attribution_format,
            k_anonymity=k,
            template_dir=template_dir,
            cache_dir=cache_dir,
        )
        formats = parse_formats(fmt, FORMATS)
        drafts = draft_reports(store, out, formats, include_suggestions, settings)
    except QcodeError as error:
        fail(error)
    basis = (
        "accepted codings and unreviewed suggestions" if include_suggestions else "accepted codings"
    )
    typer.echo(f"Draft theme report from {basis}:")
    for path in drafts.paths:
        if path.parent == out:
            typer.echo(f"  {path}")
    for warning in drafts.warnings:
        typer.secho(f"Warning: {warning}", fg=typer.colors.YELLOW, err=True)


@app.command("export-qdpx")
def export_qdpx_command(
    out: Annotated[Path, typer.Argument(help="REFI-QDA project file to write (.qdpx).")],
    store: Annotated[Path, typer.Option(help="Project database.")] = Path("outputs/project.sqlite"),
    include_suggestions: Annotated[
        bool,
        typer.Option(
            "--include-suggestions",
            help="Also export unreviewed machine suggestions, under the machine coder's user.",
        ),
    ] = False,
) -> None:
    """Write the project for NVivo, ATLAS.ti, MAXQDA or QualCoder: interviews, codebook,
    reviewers' accepted codings and memos, participant attributes as cases. The file is checked
    against the REFI-QDA schema first; an invalid one is never written."""
    from pipeline.interop.refi import export_qdpx, open_project

    try:
        with open_project(store) as project:
            result = export_qdpx(project, out, include_suggestions)
    except QcodeError as error:
        fail(error)
    typer.echo(result.summary())


@app.command("import-qdpx")
def import_qdpx_command(
    qdpx: Annotated[Path, typer.Argument(help="REFI-QDA project from another tool (.qdpx).")],
    store: Annotated[Path, typer.Option(help="Project database.")] = Path("outputs/project.sqlite"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be recorded; write nothing.")
    ] = False,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Make the tool's codings the project's own decisions (default: a separate "
            "coder per tool user, for agreement only).",
        ),
    ] = False,
) -> None:
    """Record another tool's codings as separate coders (one per tool user, "USER (FILE)"), so
    agreement can be measured here; the project's codings and reports do not change unless you
    pass --adopt. Codes and spans that do not fit are listed."""
    from pipeline.interop.refi import import_qdpx, open_project

    try:
        with open_project(store) as project:
            report = import_qdpx(project, qdpx, dry_run, adopt)
    except QcodeError as error:
        fail(error)
    typer.echo(report.summary())


@app.command("export-qdc")
def export_qdc_command(
    out: Annotated[Path, typer.Argument(help="REFI-QDA codebook file to write (.qdc).")],
    codebook: CodebookOption,
) -> None:
    """Write a codebook as a REFI-QDA codebook: groups as parent codes, definitions, include,
    exclude and examples in each code's description."""
    from pipeline.codebook import load_codebook
    from pipeline.interop.qdc import export_qdc

    try:
        book = load_codebook(codebook)
        path = export_qdc(book, out)
    except QcodeError as error:
        fail(error)
    typer.echo(f"Wrote {path}: {len(book.codes)} codes in {len(book.groups)} groups.")


@app.command("import-codebook")
def import_codebook_command(
    table: Annotated[
        Path,
        typer.Argument(
            help="Spreadsheet (.csv or .xlsx), one row per code: id, label, definition, and "
            "optionally group, kind, include, exclude, examples, applies_to:ATTRIBUTE."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Codebook YAML to write.")],
    name: Annotated[
        str | None, typer.Option(help="The codebook's name (default: the file name).")
    ] = None,
) -> None:
    """Turn a codebook kept in a spreadsheet into a qcode codebook (YAML)."""
    from pipeline.interop.codebook_table import import_codebook_table

    try:
        result = import_codebook_table(table, out, name)
    except QcodeError as error:
        fail(error)
    typer.echo(result.summary())


@app.command("import-qdc")
def import_qdc_command(
    qdc: Annotated[
        Path, typer.Argument(help="REFI-QDA codebook (.qdc), or a project (.qdpx/.qde).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Codebook YAML to write.")],
) -> None:
    """Turn another tool's codebook into a qcode codebook (YAML), saying what it had to guess."""
    from pipeline.interop.qdc import import_qdc

    try:
        result = import_qdc(qdc, out)
    except QcodeError as error:
        fail(error)
    typer.echo(result.summary())


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("Interrupted; outputs of unfinished runs were not written.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
