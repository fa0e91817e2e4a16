"""The retraining flow: reviewers' decisions in a real project store -> a saved coder."""

from __future__ import annotations

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
