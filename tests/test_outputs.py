from __future__ import annotations

import pandas as pd
import pytest

from pipeline.outputs import write_run


def test_failed_write_leaves_nothing_behind(tmp_path, sample_transcripts):
    transcripts, _ = sample_transcripts
    frame = pd.DataFrame({"unit_id": ["a"]})

    def broken_render(folder):
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_run(tmp_path, "run-1", transcripts[:1], frame, frame, {}, broken_render)
    assert list(tmp_path.iterdir()) == []


def test_write_run_is_complete(tmp_path, sample_transcripts):
    transcripts, _ = sample_transcripts
    frame = pd.DataFrame({"unit_id": ["a"], "x": [1]})
    run = write_run(tmp_path, "run-2", transcripts, frame, frame, {"run_id": "run-2"})
    names = {p.name for p in run.iterdir()}
    assert {
        "units.csv",
        "units.parquet",
        "suggestions.csv",
        "suggestions.parquet",
        "manifest.json",
        "transcripts",
    } <= names
    assert (tmp_path / "LATEST").read_text().strip() == "run-2"
    saved = (run / "transcripts" / f"{transcripts[0].transcript_id}.txt").read_text()
    assert saved == transcripts[0].text
