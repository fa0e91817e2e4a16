from __future__ import annotations

import csv
import io

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.codebook import (
    Code,
    applicable,
    applicable_to_units,
    definition_sentences,
    load_codebook,
    parse_codebook,
)
from pipeline.errors import CodebookError
from pipeline.interop.codebook_table import import_codebook_table
from tests.conftest import write

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


@pytest.mark.parametrize(
    ("definition", "sentences"),
    [
        ("One sentence only", ["One sentence only"]),
        (
            "Staff attitude. Dignity and respect!  Teamwork?",
            ["Staff attitude.", "Dignity and respect!", "Teamwork?"],
        ),
        (
            "Leaflets (e.g. sheets, webpages etc.) The main distinction is reference material.",
            [
                "Leaflets (e.g. sheets, webpages etc.)",
                "The main distinction is reference material.",
            ],
        ),
        (
            "Products (e.g. Razors) and how they are given. Next one.",
            ["Products (e.g. Razors) and how they are given.", "Next one."],
        ),
        (
            "Upkeep: - In relation to comfort, rooms. - In relation to noise",
            ["Upkeep:", "In relation to comfort, rooms.", "In relation to noise"],
        ),
        (
            "Said by Dr. Smith in 2020. 3 reasons follow.",
            ["Said by Dr. Smith in 2020.", "3 reasons follow."],
        ),
    ],
)
def test_definition_sentences(definition, sentences):
    assert definition_sentences(definition) == sentences


def test_a_code_without_examples_stands_for_its_definition_sentence_by_sentence():
    """Examples already stand for a code's parts; without them, its definition's sentences do
    (docs/zero-shot.md: NHS answers, held-out micro-F1 0.225 -> 0.315)."""
    plain = Code(id="a", label="Staff", group="g", kind="context", definition="Manner. Dignity.")
    assert plain.prototype_texts() == ["Staff. Manner.", "Dignity."]
    with_examples = plain.model_copy(update={"examples": ("They were kind.",)})
    assert with_examples.prototype_texts() == ["Staff. Manner. Dignity.", "They were kind."]


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


# -- hostile and malformed codebooks (issue 12) ----------------------------------------------------

# A "billion laughs" of under 700 bytes: nine levels of nine aliases, 9^9 strings once expanded.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "name: bomb\ngroups: {g: G}\ncodes: [{id: x, label: X, group: g, definition: *i}]\n"
)


def _refusal(text: str) -> CodebookError:
    with pytest.raises(CodebookError) as error:
        parse_codebook(text, "book.yaml")
    assert error.value.message.startswith("[E2")
    assert "book.yaml" in error.value.message
    return error.value


def test_alias_bomb_is_refused_before_it_expands():
    assert len(ALIAS_BOMB) < 700
    error = _refusal(ALIAS_BOMB)
    assert error.code == "E201" and "expands to more than" in error.problem
    assert error.line is not None


def test_doubling_aliases_and_too_many_aliases_are_refused():
    doubling = "a0: &a0 [x, x]\n" + "".join(
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, 40)
    )
    assert "expands to more than" in _refusal(doubling + MINIMAL).problem
    many = "x: &x hello\ny: [" + ", ".join(["*x"] * 150) + "]\n"
    error = _refusal(many + MINIMAL)
    assert error.code == "E201" and "more than 100 YAML aliases" in error.problem


def test_alias_to_itself_is_refused():
    assert "contains it" in _refusal("loop: &l [*l]\n" + MINIMAL).problem


def test_deep_nesting_is_refused_with_the_line():
    error = _refusal(MINIMAL + "  - id: deep\n    examples: " + "[" * 3000 + "]" * 3000 + "\n")
    assert error.code == "E201" and "nested more than" in error.problem
    assert error.line == 17  # the line of "examples:"


def test_oversized_file_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(MINIMAL + "# " + "x" * 2_100_000 + "\n")
    with pytest.raises(CodebookError, match=r"E201.*huge.yaml.*MB"):
        load_codebook(path)
    with pytest.raises(CodebookError, match=r"E201.*MB"):
        parse_codebook(path.read_text())


@pytest.mark.parametrize(
    ("text", "first", "second"),
    [
        (MINIMAL.replace("name: Test\n", "name: Test\nname: Other\n"), 1, 2),
        (
            MINIMAL.replace("    kind: enabler\n", "    kind: enabler\n    kind: inhibitor\n", 1),
            8,
            9,
        ),
        (MINIMAL.replace("  four_ts: {label: Four Ts}\n", "  g: {label: A, label: B}\n"), 3, 3),
    ],
)
def test_duplicate_keys_are_refused_with_both_lines(text, first, second):
    error = _refusal(text)
    assert "appears twice" in error.problem
    assert f"lines {first} and {second}" in error.problem and error.line == second


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("name: Test\n", "name: Test\ndescription: [a, b]\n"), "'description' must be text"),
        (("name: Test\n", "name: Test\nkinds: enabler\n"), "'kinds' must be a mapping"),
        (("name: Test\n", "name: Test\nkinds: [enabler]\n"), "'kinds' must be a mapping"),
        (("name: Test\n", "name: [Test]\n"), "'name' must be text"),
        (('examples: ["We trust each other."]', "examples: {a: b}"), "'examples' must be a list"),
        (("definition: Time invested.", "definition: [Time]"), "'definition' must be text"),
        (("label: Trust", "label: {a: b}"), "'label' must be text"),
        (("  four_ts: {label: Four Ts}", "  four_ts: [Four Ts]"), "not a list"),
        (("  four_ts: {label: Four Ts}", "  four_ts: {label: [x]}"), "'label' must be text"),
        (("groups:\n  four_ts: {label: Four Ts}", "groups: [four_ts]"), "'groups' must map"),
        (("codes:\n", "codes: 3\nrenamed:\n"), "'codes' must be a non-empty list"),
        (("- id: ts.time", "- [ts.time]\n  - id: y"), "not a mapping of fields"),
        (("kind: enabler", "kind: [enabler]"), "'kind'"),
        (("kind: enabler", "applies_to: [question]"), "'applies_to' must map"),
        (("kind: enabler", "applies_to: {question: {a: b}}"), "'question' must be a value"),
    ],
)
def test_fields_of_the_wrong_shape_are_clear_errors(change, expected):
    error = _refusal(MINIMAL.replace(*change, 1))
    assert expected in error.message
    assert error.line is not None


@pytest.mark.parametrize(
    "renamed",
    ["renamed: [ts.old]\n", "renamed: {ts.old: [ts.trust]}\n", "renamed: ts.old\n"],
)
def test_renamed_of_the_wrong_shape_is_a_clear_error(renamed):
    assert "renamed" in _refusal(MINIMAL + renamed).message


def test_numbers_and_dates_are_read_as_text():
    book = parse_codebook(
        MINIMAL.replace("name: Test", "name: 2024\nversion: 1.5").replace("label: Time", "label: 7")
    )
    assert book.name == "2024" and book.version == "1.5" and book.code("ts.time").label == "7"


def test_a_spreadsheet_given_as_codebook_points_at_import_codebook(tmp_path):
    path = tmp_path / "book.csv"
    path.write_text("id,label,definition\na,A,An a.\n")
    with pytest.raises(CodebookError, match=r"qcode import-codebook book.csv --out book.yaml"):
        load_codebook(path)


# A property test: whatever YAML-ish text comes in, the loader answers with a CodebookError or a
# codebook, never another exception.
_KEYS = [
    "name",
    "groups",
    "codes",
    "id",
    "label",
    "group",
    "kind",
    "definition",
    "examples",
    "include",
    "exclude",
    "renamed",
    "kinds",
    "applies_to",
    "question",
    "description",
    "x",
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.sampled_from([*_KEYS, "enabler", "inhibitor", "context", "", " ", "ts.trust", "g"]),
    st.text(max_size=8),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), _SCALARS), inner, max_size=5),
    ),
    max_leaves=25,
)


@st.composite
def _codebook_like(draw) -> str:
    data = {
        "name": draw(_SCALARS),
        "groups": draw(st.one_of(_VALUES, st.just({"g": {"label": "G"}}))),
        "codes": draw(
            st.lists(
                st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=8)
                | st.fixed_dictionaries(
                    {"id": _SCALARS, "label": _SCALARS, "definition": _SCALARS},
                    optional={
                        "group": _VALUES,
                        "kind": _VALUES,
                        "applies_to": _VALUES,
                        "examples": _VALUES,
                    },
                ),
                max_size=4,
            )
            | _VALUES
        ),
    }
    for key in draw(st.lists(st.sampled_from(_KEYS), max_size=3)):
        data[key] = draw(_VALUES)
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    cuts = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(text)),
                st.sampled_from(
                    [
                        "",
                        "&a ",
                        "*a",
                        ":",
                        "- ",
                        "[",
                        "{",
                        "}",
                        "\n  ",
                        "\t",
                        "'",
                        '"',
                        "!!python/int ",
                        "<<: *a\n",
                        "\x00",
                        "\x07",
                        "\ufeff",
                    ]
                ),
            ),
            max_size=3,
        )
    )
    for at, insert in cuts:
        text = text[:at] + insert + text[at:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_codebook_like())
def test_any_yaml_gives_a_codebook_or_a_codebook_error(text):
    try:
        book = parse_codebook(text, "fuzz.yaml")
    except CodebookError as error:
        assert error.message.startswith("[E2") and "fuzz.yaml" in error.message
    else:
        assert book.codes and book.sha256
        for code in book.codes:
            code.applies({"question": "x"})


# -- optional kind and group; applies_to (issue 13) ----------------------------------------------

PLAIN = """\
name: Survey
codes:
  - id: staff
    label: Staff
    definition: Comments about the staff.
  - id: waiting
    label: Waiting
    definition: Comments about waiting times.
    applies_to: {question: ["What could we do better?", "Anything else?"]}
  - id: praise
    label: Praise
    definition: Thanks and praise.
    applies_to: {question: "What went well?", site: [North, 3]}
"""


def test_kind_and_group_are_optional():
    book = parse_codebook(PLAIN)
    assert [g.id for g in book.groups] == ["codes"]
    assert all(c.group == "codes" and c.kind is None for c in book.codes)
    assert book.counterparts("staff") == []
    mixed = MINIMAL + "  - id: other\n    label: Other\n    definition: Anything else.\n"
    book = parse_codebook(mixed)
    assert [g.id for g in book.groups] == ["four_ts", "codes"]
    assert book.code("other").group == "codes" and book.code("ts.trust").kind == "enabler"


def test_a_named_group_must_still_be_declared():
    text = PLAIN.replace("label: Staff\n", "label: Staff\n    group: people\n")
    assert "group 'people'" in _refusal(text).problem


def test_applies_to_scopes_codes_to_attribute_values():
    book = parse_codebook(PLAIN)
    assert book.scoped_by == ["question", "site"]
    assert book.code("praise").applies_to == {
        "question": ("What went well?",),
        "site": ("North", "3"),
    }
    better = {"question": "what could  we do better?"}  # spacing and case do not matter
    assert applicable(book, better).tolist() == [True, True, False]
    assert applicable(book, {"question": "What went well?", "site": "north"}).tolist() == [
        True,
        False,
        True,
    ]
    assert applicable(book, {"question": "What went well?", "site": "South"}).tolist() == [
        True,
        False,
        False,
    ]
    # A unit without the attribute a code is scoped by does not get the code.
    assert applicable(book, {}).tolist() == [True, False, False]
    mask = applicable_to_units(book, [better, {}, better, {"question": "Anything else?"}])
    assert mask.shape == (4, 3) and mask[:, 1].tolist() == [True, False, True, True]
    assert applicable_to_units(parse_codebook(MINIMAL), [{}, {}]).all()


def test_applies_to_keeps_the_hash_of_unscoped_codebooks():
    plain = parse_codebook(MINIMAL)
    assert "applies_to" not in str(plain.sha256)
    scoped = parse_codebook(
        MINIMAL.replace("    kind: enabler\n", "    kind: enabler\n    applies_to: {q: [a]}\n", 1)
    )
    assert scoped.sha256 != plain.sha256


# -- import-codebook: a spreadsheet into YAML -----------------------------------------------------

SHEET = (
    "ID,Label,Definition,Group,Kind,Examples,Applies to: Question,Notes\n"
    'staff,Staff,Comments about staff.,People,,"Kind nurses; rude porter",,x\n'
    'waiting,Waiting,Waiting times.,Access,inhibitor,"Long wait\nNo slots","What could we do '
    'better?;Anything else?",\n'
    ",,,,,,,\n"
    "praise,Praise,Thanks and praise.,People,enabler,,,\n"
)


def test_import_codebook_from_csv_writes_a_loadable_yaml(tmp_path):
    out = tmp_path / "book.yaml"
    result = import_codebook_table(write(tmp_path / "my_codes.csv", SHEET), out)
    book = load_codebook(out)
    assert book.ids == ["staff", "waiting", "praise"] and book.name == "my codes"
    assert [(g.id, g.label) for g in book.groups] == [("people", "People"), ("access", "Access")]
    waiting = book.code("waiting")
    assert waiting.kind == "inhibitor" and waiting.examples == ("Long wait", "No slots")
    assert waiting.applies_to == {"question": ("What could we do better?", "Anything else?")}
    assert book.code("staff").examples == ("Kind nurses", "rude porter")
    assert book.code("staff").kind is None and book.code("staff").applies_to == {}
    assert any("'notes'" in w for w in result.warnings)


def test_import_codebook_from_xlsx(tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    for row in csv.reader(io.StringIO(SHEET)):
        sheet.append(row)
    workbook.save(tmp_path / "codes.xlsx")
    import_codebook_table(tmp_path / "codes.xlsx", tmp_path / "codes.yaml", name="Survey")
    book = load_codebook(tmp_path / "codes.yaml")
    assert book.name == "Survey" and book.ids == ["staff", "waiting", "praise"]


@pytest.mark.parametrize(
    ("sheet", "line", "expected"),
    [
        ("label,definition\nA,a\n", 1, "missing column(s) id"),
        ("", 1, "first row must name the columns"),
        ("id,label,definition\n", 2, "no codes"),
        ("id,label,definition\na,A,a.\n,B,b.\n", 3, "row 3: the id is empty"),
        ("id,label,definition\na,A,a.\na,B,b.\n", 3, "also used on row 2"),
        ("id,label,definition\na,A,a.\nb,B,\n", 3, "row 3 (code 'b'): 'definition' is empty"),
        ("id,label,definition\na,,a.\n", 2, "'label' is empty"),
        ("id,label,definition\na b,A,a.\n", 2, "must not contain spaces"),
        ("id,label,definition,kind\na,A,a.,helper\n", 2, "kind 'helper' must be one of"),
        ("id,label,definition,group\na,A,a.,X-Y\nb,B,b.,X Y\n", 3, "the same id 'x_y'"),
        ("id,label,definition,id\na,A,a.,b\n", 1, "two columns are called 'id'"),
        ("id,label,definition,applies_to:\na,A,a.,b\n", 1, "names no attribute"),
    ],
)
def test_import_codebook_names_the_bad_row(tmp_path, sheet, line, expected):
    out = tmp_path / "out.yaml"
    with pytest.raises(CodebookError) as error:
        import_codebook_table(write(tmp_path / "codes.csv", sheet), out)
    assert expected in error.value.problem and error.value.line == line
    assert f"codes.csv, line {line}" in error.value.message
    assert not out.exists()


def test_import_codebook_refuses_files_it_cannot_read(tmp_path):
    (tmp_path / "codes.xlsx").write_bytes(b"not a workbook")
    with pytest.raises(CodebookError, match="not an Excel workbook"):
        import_codebook_table(tmp_path / "codes.xlsx", tmp_path / "o.yaml")
    with pytest.raises(CodebookError, match=r"must end in \.yaml"):
        import_codebook_table(write(tmp_path / "c.csv", SHEET), tmp_path / "o.csv")


def test_a_codebook_read_again_is_a_copy_and_follows_edits(tmp_path):
    """Parsed once per exact text (``qcode run --watch``), handed out as a copy."""
    path = tmp_path / "book.yaml"
    path.write_text(
        "name: small\ncodes:\n  - id: a\n    label: Alpha\n    definition: First code.\n"
        "  - id: b\n    label: Beta\n    definition: Second code.\n",
        encoding="utf-8",
    )
    first, second = load_codebook(path), load_codebook(path)
    assert first == second and first is not second
    first.renamed["a"] = "z"  # a caller changing its copy does not change the next one
    assert load_codebook(path).renamed == {}
    path.write_text(path.read_text(encoding="utf-8").replace("Beta", "Gamma"), encoding="utf-8")
    assert load_codebook(path).codes[1].label == "Gamma"
