"""The benchmark corpus: reproducible, shaped like the sample, and not the sample again."""

from __future__ import annotations

import re

import pytest

from bench.corpus import WORDS_PER_PAGE, edit_transcript, write_corpus


def test_same_seed_same_corpus_other_seed_other_corpus(tmp_path):
    a = write_corpus(tmp_path / "a", 12, seed=3)
    b = write_corpus(tmp_path / "b", 12, seed=3)
    c = write_corpus(tmp_path / "c", 12, seed=4)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == a.files == b.files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / files[0]).read_bytes() != (tmp_path / "c" / c.files[0]).read_bytes()


def test_corpus_reads_as_interviews_of_the_requested_size(tmp_path):
    from pipeline.ingest import read_transcripts

    stats = write_corpus(tmp_path, 30, seed=1)
    assert abs(stats.words - 30 * WORDS_PER_PAGE) < 0.1 * 30 * WORDS_PER_PAGE
    transcripts, problems = read_transcripts(tmp_path)
    assert len(transcripts) == stats.transcripts >= 3
    assert not [p for p in problems if p.severity == "skipped"]
    for t in transcripts:
        kinds = {turn.speaker_kind for turn in t.turns}
        assert kinds == {"interviewer", "participant"}
        people = t.participants or {"Participant": t.attributes}
        assert all(p.get("role") and p.get("local_authority") for p in people.values())
    # Spoken sentences: mostly short, some long, about as in the sample (12 words on average).
    assert 8 <= stats.mean_sentence_words <= 18


def test_sentences_are_recombined_not_copied(tmp_path):
    stats = write_corpus(tmp_path, 40, seed=1)
    # Short ones ("Yes.", "Right.") repeat as in real speech; longer ones almost never do.
    assert stats.unique_share_4_words > 0.97
    assert stats.unique_share > 0.75
    assert stats.verbatim_from_sample_share < 0.25


def test_edit_changes_one_transcript_a_little(tmp_path):
    stats = write_corpus(tmp_path, 10, seed=1)
    path = tmp_path / stats.files[0]
    before = path.read_text(encoding="utf-8")
    edit_transcript(path, seed=9)
    after = path.read_text(encoding="utf-8")
    assert after != before and after.split("\n---\n")[0] == before.split("\n---\n")[0]
    turns = lambda text: re.findall(r"^(Interviewer|Participant|P\d):", text, re.M)  # noqa: E731
    assert len(turns(after)) == len(turns(before)) + 2


def test_steal_share_is_the_steal_counters_share_of_all_cpu_time():
    from bench.run import cpu_times, steal_share

    before = [100, 0, 10, 500, 0, 0, 0, 40, 0, 0]
    after = [160, 0, 20, 520, 0, 0, 0, 50, 0, 0]  # 100 ticks in all, 10 stolen
    assert steal_share(before, after) == 0.1
    assert steal_share(None, after) is None
    assert steal_share(before, before) is None  # no time passed
    now = cpu_times()
    if now is not None:  # Linux
        assert len(now) >= 8
        share = steal_share(now, [x + 1 for x in now])
        assert share is not None and 0 < share < 1


def test_store_edit_benchmark_runs_and_stores_only_the_edited_versions(tmp_path, monkeypatch):
    """bench.store_edit end to end on a small corpus: it writes its JSON, and the edit runs
    add only the edited transcript's suggestions (the full runs add every row)."""
    import json
    import sys

    from bench import store_edit
    from pipeline.codebook import load_codebook

    out = tmp_path / "store-edit.json"
    argv = ["store_edit", "--pages", "30", "--rounds", "2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    store_edit.main()
    result = json.loads(out.read_text(encoding="utf-8"))
    assert len(result["edit_s"]) == len(result["full_s"]) == 2
    codes = load_codebook(store_edit.ROOT / "codebooks" / "west_partnership.yaml").ids
    units, suggestions = store_edit.synthetic_run(30, codes)
    edited = sorted(set(units["transcript_id"]))[len(set(units["transcript_id"])) // 2]
    per_edit = int((suggestions["transcript_id"] == edited).sum())
    # first run + 2 full runs store everything; 2 edits (the "again" runs reuse them) add
    # only the edited transcript's rows.
    assert result["suggestion_rows_stored_at_end"] == 3 * result["suggestions"] + 2 * per_edit


@pytest.mark.slow
def test_edit_benchmarks_run_end_to_end_on_a_small_corpus(prefect_harness, tmp_path, monkeypatch):
    """bench.edit_profile (edits in one process, after simulated decisions), then
    bench.watch_edits on its folder (edits under a real ``qcode run --watch``): both write
    their JSON with one timing per edit."""
    import json
    import sys

    from bench import edit_profile, watch_edits

    work, profile, watched = tmp_path / "work", tmp_path / "profile.json", tmp_path / "w.json"
    argv = ["edit_profile", "--pages", "15", "--work", str(work), "--edits", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--decisions", "5", "--out", str(profile)])
    edit_profile.main()
    result = json.loads(profile.read_text(encoding="utf-8"))
    assert len(result["edits"]) == 1 and result["edits"][0]["wall_s"] > 0
    assert result["decisions_in_store"] >= 5 and result["first_run_peak_rss_mb"] > 0
    monkeypatch.setattr(sys, "argv", ["watch_edits", "--work", str(work), "--out", str(watched)])
    watch_edits.main()
    edits = json.loads(watched.read_text(encoding="utf-8"))["watch"]["edits"]
    assert len(edits) == 2 and all(e["wall_s"] > 0 for e in edits)
