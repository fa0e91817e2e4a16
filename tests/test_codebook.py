from __future__ import annotations

import pytest

from pipeline.codebook import load_codebook, parse_codebook
from pipeline.errors import CodebookError

REQUIRED_IDS = [
    "structure.focus_priorities",
    "structure.architecture",
    "structure.ecosystem_churn",
    "structure.la_context",
    "structure.role_clarity",
    "purpose.shared_purpose",
    "purpose.agency_capacity",
    "purpose.goal_clarity",
    "process.collaboration_sharing",
    "process.leadership_coordination",
    "process.professional_learning",
    "process.responsiveness",
    "process.digital_connection",
    "process.external_partnership",
    "process.organic_growth",
    "process.adding_value",
    "process.communications",
    "process.reaching_teachers",
    "process.follow_through",
    "ts.time",
    "ts.time_pressure",
    "ts.transparency",
    "ts.transparency_lacking",
    "ts.trust",
    "ts.trust_lacking",
    "ts.tenacity",
    "ts.tenacity_lacking",
    "context.pandemic",
    "context.resources",
]

MINIMAL = """\
name: Test
groups:
  four_ts: {label: Four Ts}
codes:
  - id: ts.trust
    label: Trust
    group: four_ts
    kind: enabler
    definition: Trust between people.
    examples: ["We trust each other."]
  - id: ts.time
    label: Time
    group: four_ts
    kind: enabler
    definition: Time invested.
"""


def test_shipped_codebook_has_exactly_the_required_codes(codebook):
    assert codebook.ids == REQUIRED_IDS


def test_shipped_codebook_codes_are_fully_written(codebook):
    for code in codebook.codes:
        sentences = [s for s in code.definition.replace("e.g.", "eg").split(". ") if s.strip()]
        assert 2 <= len(sentences) <= 5, code.id
        assert code.include and code.exclude, code.id
        assert len(code.examples) >= 4, code.id
        assert code.label, code.id


def test_counterparts_are_opposite_kind_in_same_group(codebook):
    names = {c.id for c in codebook.counterparts("ts.trust")}
    assert names == {
        "ts.time_pressure",
        "ts.transparency_lacking",
        "ts.trust_lacking",
        "ts.tenacity_lacking",
    }


def test_minimal_codebook_parses():
    book = parse_codebook(MINIMAL)
    assert book.ids == ["ts.trust", "ts.time"]


def test_duplicate_id_is_rejected_with_code_and_line():
    text = MINIMAL.replace("id: ts.time", "id: ts.trust")
    with pytest.raises(CodebookError) as error:
        parse_codebook(text, "book.yaml")
    assert "ts.trust" in error.value.message and "defined twice" in error.value.message
    assert error.value.line == 11
    assert "book.yaml, line 11" in error.value.message


def test_unknown_group_is_rejected_naming_the_code():
    with pytest.raises(CodebookError, match=r"ts.time.*group 'fourts'"):
        parse_codebook(
            MINIMAL.replace(
                "group: four_ts\n    kind: enabler\n    definition: Time",
                "group: fourts\n    kind: enabler\n    definition: Time",
            )
        )


def test_unknown_kind_is_rejected_naming_the_code():
    with pytest.raises(CodebookError, match=r"code 'ts.trust'.*'kind' is 'helper'"):
        parse_codebook(MINIMAL.replace("kind: enabler", "kind: helper", 1))


def test_empty_definition_is_rejected_naming_the_code():
    with pytest.raises(CodebookError, match=r"code 'ts.time'.*definition.*empty"):
        parse_codebook(MINIMAL.replace("definition: Time invested.", "definition: '  '"))


def test_bad_yaml_reports_line():
    with pytest.raises(CodebookError) as error:
        parse_codebook(MINIMAL + "  - id: [unclosed\n", "b.yaml")
    assert error.value.line is not None and "not valid YAML" in error.value.message


def test_rename_must_point_to_a_code():
    with pytest.raises(CodebookError, match="does not exist"):
        parse_codebook(MINIMAL + "renamed:\n  ts.old: ts.nowhere\n")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CodebookError, match="file not found"):
        load_codebook(tmp_path / "nope.yaml")


def test_hash_ignores_formatting():
    assert parse_codebook(MINIMAL).sha256 == parse_codebook(MINIMAL + "\n\n# note\n").sha256
    assert (
        parse_codebook(MINIMAL).sha256
        != parse_codebook(MINIMAL.replace("Time invested.", "Time spent.")).sha256
    )
