"""The retraining flow: reviewers' decisions in a real project store -> a saved coder."""

from __future__ import annotations

import json

import pytest

# Imported with the module, not inside a test: the first `from prefect import flow` sets up
# Prefect's logging (dictConfig), which would drop the handler `caplog` has already put on the
# root logger, and the progress lines would go unseen.
from flows.training import retrain_from_decisions
from pipeline.learn import LearnedCoder
from pipeline.settings import Settings
from tests.reporting import DECIDED_CODES, decide_sample


@pytest.mark.slow
def test_retrain_learns_the_decided_codes_and_reports_progress(
    prefect_harness, project_location, cache_dir, caplog, tmp_path
):
    """On both backends (``qcode retrain --store postgresql://...``)."""
    decide_sample(project_location)
    out = tmp_path / "coder"
    caplog.set_level("INFO")
    folder = retrain_from_decisions(project_location, out, Settings(cache_dir=cache_dir))
    coder = LearnedCoder.load(folder)
    # Every code reviewers accepted 12 times has its own model; rejections are its negatives.
    for code in DECIDED_CODES:
        assert coder.learned[coder.code_ids.index(code)], code
    assert coder.info["labelled_units"] >= 12 * len(DECIDED_CODES)
    assert "train: learning codes 1/1" in caplog.text


@pytest.mark.slow
def test_retrained_coder_tunes_its_encoder_and_a_run_codes_with_it(
    prefect_harness, project_store, cache_dir, tmp_path
):
    """The tuned encoder is saved with the coder (safetensors and JSON, no pickles), is tied to
    it by fingerprint, and a run given the coder encodes its units with it."""
    from flows.coding import code_transcripts
    from pipeline.embed import model_fingerprint
    from tests.conftest import CODEBOOK, SAMPLE

    decide_sample(project_store)
    folder = retrain_from_decisions(
        project_store, project_store.parent / "coder", Settings(cache_dir=cache_dir)
    )
    tuned = folder / "encoder"
    assert (tuned / "model.safetensors").is_file() and (tuned / "modules.json").is_file()
    pickles = [p for p in folder.rglob("*") if p.suffix in {".bin", ".pkl", ".pt", ".pickle"}]
    assert pickles == []
    coder = LearnedCoder.load(folder)
    assert coder.model_fingerprint == model_fingerprint(tuned)
    assert not (folder / ".encoder-new").exists()

    run = code_transcripts(
        SAMPLE, CODEBOOK, tmp_path / "out", Settings(cache_dir=cache_dir, classifier=folder)
    )
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["fingerprint"] == coder.model_fingerprint

    # Turned off, retraining leaves the encoder frozen and removes the old tuned one.
    again = retrain_from_decisions(
        project_store,
        project_store.parent / "coder",
        Settings(cache_dir=cache_dir, tune_encoder=False),
    )
    assert not (again / "encoder").exists()
    assert LearnedCoder.load(again).model_fingerprint != coder.model_fingerprint
