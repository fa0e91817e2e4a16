"""Re-runs after an edit give exactly the outputs of a cold run on the edited transcripts."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.conftest import CODEBOOK, SAMPLE

pytestmark = pytest.mark.slow

FILES = ("wp02_class_teacher.txt", "wp03_qio.txt", "wp06_es_officer.txt")
RUN_ID = re.compile(rb"\d{8}T\d{6}\d*Z-[0-9a-f]{6}")
# What a manifest says about this run rather than about its outputs.
VOLATILE = {"run_id", "started_at", "finished_at", "timings_s", "execution"}


def _files(run_dir) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def _comparable(name: str, data: bytes) -> object:
    """The file's content with run ids blanked; for the manifest, without timings and counts
    of what this run had to encode (a cold run encodes everything)."""
    data = RUN_ID.sub(b"<run>", data)
    if name == "manifest.json":
        manifest = json.loads(data)
        for key in VOLATILE:
            manifest.pop(key, None)
        manifest["counts"].pop("newly_embedded")
        return manifest
    return data


def test_an_edit_gives_the_outputs_of_a_cold_run_byte_for_byte(
    prefect_harness, tmp_path, monkeypatch
):
    """Edit one transcript, re-run with the warm caches and store, and compare every output
    file with a cold run (empty caches, new store) into another folder."""
    from flows.coding import code_transcripts
    from pipeline.settings import Settings
    from pipeline.store import NewDecision, Store

    folder = tmp_path / "in"
    folder.mkdir()
    for name in FILES:
        shutil.copy(SAMPLE / name, folder)
    warm, cold = tmp_path / "warm", tmp_path / "cold"
    warm.mkdir()
    cold.mkdir()

    monkeypatch.chdir(warm)  # caches in ./.cache: the same settings for both runs
    first = code_transcripts(folder, CODEBOOK, warm / "out", Settings())
    # People's decisions, in every transcript: codings depend on them as well as on the text.
    with Store(warm / "out" / "project.sqlite") as store:
        suggested = store.suggestions().merge(store.units()[["unit_id", "transcript_id", "start"]])
        suggested = suggested.sort_values(["transcript_id", "start", "rank"])
        picks = suggested.groupby("transcript_id").head(2)
        store.decide(
            "ann",
            [
                NewDecision(r.unit_id, r.code_id, "accept" if i % 2 else "reject")
                for i, r in enumerate(picks.itertuples())
            ]
            + [NewDecision(picks.iloc[0].unit_id, "ts.trust", "add", memo="said twice")],
        )
    # A run with those decisions, then one changed: the next run must not reuse the
    # codings rows written for the decisions as they were.
    code_transcripts(folder, CODEBOOK, warm / "out", Settings())
    with Store(warm / "out" / "project.sqlite") as store:
        first_pick = picks.iloc[0]
        store.decide("bob", [NewDecision(first_pick.unit_id, first_pick.code_id, "accept")])
    cold_out = cold / "out"
    cold_out.mkdir()
    shutil.copy(warm / "out" / "project.sqlite", cold_out)  # the same decisions, no caches
    path = folder / "wp03_qio.txt"
    text = path.read_text(encoding="utf-8")
    text = text.replace("Thanks. Cheers, bye now.", "Thanks. Cheers, bye for now.")
    text += (
        "\nInterviewer: One last thing: what would you change about the network meetings?\n\n"
        "Participant: I would give teachers protected time to plan together, because the "
        "twilight sessions were always squeezed by everything else going on in school.\n"
    )
    path.write_text(text, encoding="utf-8")
    edited = code_transcripts(folder, CODEBOOK, warm / "out", Settings())
    assert edited != first
    # Only the edited transcript was segmented and coded again: one more result kept.
    kept = sorted((warm / ".cache" / "results").glob("*.units.parquet"))
    assert len(kept) == len(FILES) + 1

    monkeypatch.chdir(cold)
    full = code_transcripts(folder, CODEBOOK, cold_out, Settings())
    codings = (full / "codings.csv").read_text(encoding="utf-8")
    assert "said twice" in codings and ",rejected," in codings

    ours, theirs = _files(edited), _files(full)
    assert sorted(ours) == sorted(theirs)
    assert "units.csv" in ours and "suggestions.parquet" in ours and "manifest.json" in ours
    for name in sorted(ours):
        assert _comparable(name, ours[name]) == _comparable(name, theirs[name]), name
    manifest = json.loads(ours["manifest.json"])
    assert 0 < manifest["counts"]["newly_embedded"] < manifest["counts"]["codable_units"]


def _frame():
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            "unit_id": ["a1", "a2", "b1", "c1", "c2", "c3"],
            "transcript_id": ["a", "a", "b", "c", "c", "c"],
            "text": ['He said "no", twice', "line\nbreak", "", None, "café, ü", "x\r\ny"],
            "score": [0.1, np.nan, 1 / 3, 2.5e-7, 1e20, -0.0],
            "low": np.array([0.1, 0.2, 0.3, np.nan, 1 / 3, 7.0], dtype=np.float32),
            "rank": [1, 2, 3, 4, 5, 6],
            "codable": [True, False, True, True, False, True],
        }
    ).astype({"unit_id": "string", "transcript_id": "string", "text": "string"})


def test_csv_from_kept_parts_is_what_pandas_writes(tmp_path):
    """A table written from per-transcript parts is byte for byte ``to_csv``'s file, on a
    first run (parts made) and on a second (parts read); an edited transcript's part is new."""
    from pipeline.incremental import CsvParts, TranscriptResults

    frame = _frame()
    expected = tmp_path / "expected.csv"
    frame.to_csv(expected, index=False)
    results = TranscriptResults(tmp_path / "results")
    keys = {"a": "ka", "b": "kb", "c": "kc"}
    for attempt in ("made", "read"):
        written = tmp_path / f"{attempt}.csv"
        CsvParts(results, keys).write("units", frame, written)
        assert written.read_bytes() == expected.read_bytes(), attempt
    parts = sorted(p.name for p in (tmp_path / "results").glob("*.units.csv"))
    assert len(parts) == 3 and parts[0].startswith("ka.")

    # Parts are read, not made again: a part changed on disk shows in the next file.
    part = next((tmp_path / "results").glob("kb.*.units.csv"))
    part.write_bytes(b"b1,b,kept,,,,\n")
    CsvParts(results, keys).write("units", frame, tmp_path / "kept.csv")
    assert b"b1,b,kept" in (tmp_path / "kept.csv").read_bytes()

    # An edited transcript has a new key: its rows are formatted again.
    edited = frame.copy()
    edited.loc[2, "text"] = "edited"
    edited.to_csv(expected, index=False)
    CsvParts(results, {**keys, "b": "kb2"}).write("units", edited, tmp_path / "edit.csv")
    assert (tmp_path / "edit.csv").read_bytes() == expected.read_bytes()

    # Other column types are other parts (a part is only reused for the same formatting).
    wider = frame.astype({"rank": "float64"})
    wider.to_csv(expected, index=False)
    CsvParts(results, keys).write("units", wider, tmp_path / "wider.csv")
    assert (tmp_path / "wider.csv").read_bytes() == expected.read_bytes()


def test_csv_rows_not_grouped_by_transcript_are_written_whole(tmp_path):
    from pipeline.incremental import CsvParts, TranscriptResults

    frame = _frame().iloc[[0, 2, 1, 3, 4, 5]].reset_index(drop=True)  # a, b, a: not grouped
    expected = tmp_path / "expected.csv"
    frame.to_csv(expected, index=False)
    results = TranscriptResults(tmp_path / "results")
    CsvParts(results, {"a": "ka", "b": "kb", "c": "kc"}).write("units", frame, tmp_path / "w.csv")
    assert (tmp_path / "w.csv").read_bytes() == expected.read_bytes()
    assert not list((tmp_path / "results").glob("*.csv"))


def test_a_reused_run_has_its_results_read_ahead(prefect_harness, tmp_path, monkeypatch):
    """A watching process whose first run reused an earlier run reads that run's results while
    it waits, so its first edit reads no unchanged transcript's results from disk."""
    import pandas as pd

    import pipeline.incremental as incremental
    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    folder = tmp_path / "in"
    folder.mkdir()
    for name in FILES:
        shutil.copy(SAMPLE / name, folder)
    monkeypatch.chdir(tmp_path)
    first = code_transcripts(folder, CODEBOOK, tmp_path / "out", Settings())
    keys = incremental.results_keys(first)
    saved = sorted(
        p.name.split(".")[0] for p in (tmp_path / ".cache/results").glob("*.units.parquet")
    )
    assert sorted(keys) == saved and len(keys) == len(FILES)

    # A new process: nothing in memory, nothing queued.
    monkeypatch.setattr(incremental, "_IN_MEMORY", {})
    monkeypatch.setattr(incremental, "_TO_READ", {})
    assert code_transcripts(folder, CODEBOOK, tmp_path / "out", Settings()) == first
    assert sorted(incremental._TO_READ) == sorted(keys)
    incremental.keep_saved_in_memory()
    assert sorted(incremental._IN_MEMORY) == sorted(keys) and not incremental._TO_READ

    read: list[str] = []
    real_read = pd.read_parquet

    def counting_read(path, *args, **kwargs):  # the real reader, counted
        read.append(str(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", counting_read)
    path = folder / "wp03_qio.txt"
    path.write_text(path.read_text(encoding="utf-8") + "\nParticipant: One more thing.\n")
    assert code_transcripts(folder, CODEBOOK, tmp_path / "out", Settings()) != first
    assert not [p for p in read if any(key in p for key in keys)]


def test_csv_parts_of_decided_rows_follow_the_decisions(tmp_path):
    """Codings people decided are not fixed by the transcript's key: a part holding them is
    kept under their values too, so a changed decision is written as it now is."""
    import pandas as pd

    from pipeline.decisions import decided_rows
    from pipeline.incremental import CsvParts, TranscriptResults

    frame = pd.DataFrame(
        {
            "unit_id": ["a1", "a1", "a2", "b1", "b2"],
            "transcript_id": ["a", "a", "a", "b", "b"],
            "code_id": ["x", "y", "x", "x", "y"],
            "status": ["suggested", "accepted", "suggested", "suggested", "suggested"],
            "memo": ["", 'why, "so"', "", "", ""],
        }
    )
    results = TranscriptResults(tmp_path / "results")
    parts = CsvParts(results, {"a": "ka", "b": "kb"}, {"codings": decided_rows})
    for status in ("accepted", "rejected", "accepted"):
        changed = frame.assign(status=frame["status"].where(frame.index != 1, status))
        parts.write("codings", changed, tmp_path / "w.csv")
        assert (tmp_path / "w.csv").read_bytes() == changed.to_csv(index=False).encode()
    # b's rows are nobody's decision: one part, reused; a's: one part per state of decisions.
    assert len(list((tmp_path / "results").glob("kb*.codings.csv"))) == 1
    assert len(list((tmp_path / "results").glob("ka*.codings.csv"))) == 2


def test_transcript_digests_are_the_json_of_every_field(sample_transcripts):
    """A transcript's key hashes the JSON ``dataclasses.asdict`` gives, so results kept under
    keys made before the faster digest are still found."""
    import dataclasses
    import hashlib

    from pipeline.incremental import _transcript_digest

    transcripts, _ = sample_transcripts
    assert transcripts
    for transcript in transcripts:
        fields = dataclasses.asdict(transcript)
        fields["problems"] = [str(p) for p in transcript.problems]
        payload = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
        assert _transcript_digest(transcript) == hashlib.sha256(payload.encode()).hexdigest()


def test_remembered_digests_are_not_computed_again(sample_transcripts, monkeypatch):
    """A watching process hashes the transcripts while it waits; its first edit reuses them."""
    import hashlib

    from pipeline import incremental

    transcripts, _ = sample_transcripts
    incremental.remember_digests(transcripts)
    expected = [
        hashlib.sha256(f"base\x00{incremental._transcript_digest(t)}".encode()).hexdigest()
        for t in transcripts
    ]
    monkeypatch.setattr(incremental, "_transcript_digest", lambda t: pytest.fail("hashed again"))
    assert [incremental.transcript_key(t, "base") for t in transcripts] == expected
