"""Re-runs: nothing changed -> the last run stands; any change -> a new run. Precision too."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest

from pipeline.store import NewDecision, Store
from tests.conftest import CODEBOOK, SAMPLE

pytestmark = pytest.mark.slow


def runs_in(store_path):
    with Store(store_path) as store:
        return [r[0] for r in store.db.execute("SELECT run_id FROM runs ORDER BY rowid")]


def test_unchanged_inputs_reuse_the_last_run_and_any_change_does_not(
    prefect_harness, tmp_path, cache_dir
):
    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    shutil.copy(SAMPLE / "wp02_class_teacher.txt", folder)
    settings = Settings(cache_dir=cache_dir)
    first = code_transcripts(folder, CODEBOOK, out, settings)
    manifest = json.loads((first / "manifest.json").read_text())
    assert len(manifest["inputs_key"]) == 64
    # Touching the file changes nothing: the key is its content.
    path = folder / "wp02_class_teacher.txt"
    os.utime(path, (1, 1))
    assert code_transcripts(folder, CODEBOOK, out, settings) == first
    assert runs_in(out / "project.sqlite") == [first.name]

    # A reviewer's decision changes the codings: a new run.
    with Store(out / "project.sqlite") as store:
        unit = store.suggestions().iloc[0]
        store.decide("ann", [NewDecision(unit.unit_id, unit.code_id, "accept")])
    second = code_transcripts(folder, CODEBOOK, out, settings)
    assert second != first
    codings = pd.read_csv(second / "codings.csv")
    assert (codings["status"] == "accepted").sum() == 1
    assert code_transcripts(folder, CODEBOOK, out, settings) == second

    # A privacy false alarm changes what is coded (the text is no longer redacted): a new run.
    from pipeline.store import PrivacyMarks

    with Store(out / "project.sqlite") as store:
        PrivacyMarks(store).mark_false_alarm("ann", "Desmos", note="maths software")
    marked = code_transcripts(folder, CODEBOOK, out, settings)
    assert marked not in (first, second)
    assert code_transcripts(folder, CODEBOOK, out, settings) == marked

    # Another setting, an edited transcript: new runs.
    third = code_transcripts(folder, CODEBOOK, out, Settings(cache_dir=cache_dir, threshold=0.5))
    assert third not in (first, second, marked)
    path.write_text(path.read_text(encoding="utf-8") + "\nInterviewer: Thanks.\n")
    fourth = code_transcripts(folder, CODEBOOK, out, Settings(cache_dir=cache_dir, threshold=0.5))
    assert fourth not in (first, second, marked, third)
    runs = [p.name for p in (first, second, marked, third, fourth)]
    assert runs_in(out / "project.sqlite") == runs


def test_precision_is_recorded_and_fp32_and_bf16_vectors_never_mix(prefect_harness, tmp_path):
    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE / "wp03_qio.txt", folder)
    cache = tmp_path / "cache"
    runs = {}
    for precision in ("fp32", "bf16"):
        settings = Settings(cache_dir=cache, precision=precision)
        run = code_transcripts(folder, CODEBOOK, tmp_path / precision, settings)
        runs[precision] = json.loads((run / "manifest.json").read_text()), run
    (m32, run32), (m16, run16) = runs["fp32"], runs["bf16"]
    assert m32["model"]["precision"] == m32["settings"]["precision"] == "fp32"
    assert m16["model"]["precision"] == m16["settings"]["precision"] == "bf16"
    # The bf16 run found none of the fp32 vectors in the shared cache.
    assert m16["counts"]["newly_embedded"] == m32["counts"]["newly_embedded"] > 100
    # ... and codes nearly the same way.
    a = pd.read_parquet(run32 / "suggestions.parquet")
    b = pd.read_parquet(run16 / "suggestions.parquet")
    pairs = lambda f: set(zip(f["unit_id"], f["code_id"], strict=True))  # noqa: E731
    assert len(pairs(a) & pairs(b)) / len(pairs(a) | pairs(b)) > 0.9
