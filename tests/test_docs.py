"""Docs that drift from the code mislead people: build the site strictly, check that everything
the code offers is documented, and run the docs' own examples against the sample project.

- The site builds with ``mkdocs build --strict``: a broken link, a missing page or anchor fails.
- Every command, option, setting and error code appears in the built site, and every command is
  explained in a hand-written page, not only in the generated reference.
- Every ``qcode ...`` line in a code block of the docs or the README parses with the real
  parser (an option that does not exist fails).
- Code blocks marked ``<!-- runnable -->`` run, in order per page, in a copy of the sample
  project holding a real run (the ``project_store`` fixture). Blocks marked
  ``<!-- runnable: slow -->`` are only parsed: a full ``qcode run`` (minutes; the same command
  runs end to end in tests/test_flow.py and tests/test_cli.py). Never run: ``qcode review`` and
  the Prefect server commands (servers that do not return; the browser tests cover the page),
  ``make`` targets, ``train``/``retrain``/``eval`` (minutes of model work, tested in
  test_training.py, test_learn.py and test_cli.py) and Dask cluster commands (test_dask.py).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from pipeline.cli import app
from pipeline.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
RUNNABLE = re.compile(
    r"<!-- runnable(?P<slow>: slow)? -->\s*\n```(?:bash|sh)\n(?P<code>.*?)\n```", re.S
)
BLOCK = re.compile(r"```(?:bash|sh|console)?\n(.*?)\n```", re.S)


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as `make docs` builds it (strict)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# -- README ----------------------------------------------------------------------------------------


def test_readme_opens_with_the_two_commands():
    head = README.split("```")[1]
    assert "make run" in head and "make test" in head
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_is_short_and_says_where_the_docs_are():
    assert len(README.splitlines()) <= 150
    assert "make docs" in README and "make docs-serve" in README


# -- the site --------------------------------------------------------------------------------------


def test_strict_build_has_every_page_of_the_nav(site):
    for page in ("index", "getting-started", "concepts", "guides/reviewer", "reference/cli"):
        assert (site / f"{page}.html").is_file(), page
    for image in ("review-unit.png", "review-queue.png", "report.png"):
        assert (site / "img" / image).stat().st_size > 20_000


def test_every_command_and_option_is_in_the_reference(site):
    from docsite.reference import cli_commands, cli_options

    reference = _text((site / "reference" / "cli.html").read_text(encoding="utf-8"))
    for name, command in cli_commands():
        assert f"qcode {name}" in reference, name
        for option in cli_options(command):
            assert option in reference, f"qcode {name} {option} missing from the reference"


def test_every_command_is_explained_in_a_guide():
    """The reference says what a command takes; a hand-written page says when to use it."""
    written = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert re.search(rf"qcode {re.escape(name)}\b", written), f"no page explains {name}"


def test_every_setting_is_documented_with_its_default(site):
    from docsite.reference import MACHINE_DEFAULTS

    reference = (site / "reference" / "settings.html").read_text(encoding="utf-8")
    rows = {
        m[1]: m[0]
        for m in re.finditer(r"<tr>\s*<td><code>(\w+)</code></td>.*?</tr>", reference, re.S)
    }
    assert set(rows) == set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        default = MACHINE_DEFAULTS.get(name) or f"`{field.default}`"
        shown = re.sub(r"`([^`]*)`", r"<code>\1</code>", default).replace("'", "&#x27;")
        assert unescape(shown) in unescape(rows[name]), f"default of {name} is not {default}"


def test_every_error_code_has_a_fix_and_is_documented(site):
    from docsite.reference import error_classes
    from pipeline.errors import QcodeError

    reference = _text((site / "reference" / "errors.html").read_text(encoding="utf-8"))
    classes = error_classes()
    assert len(classes) > 10
    for cls in classes:
        assert re.fullmatch(r"E\d{3}", cls.code), cls
        if cls is not QcodeError:
            assert cls.fix and cls.fix != QcodeError.fix, f"{cls.__name__} has no fix of its own"
        assert cls.code in reference and cls.__name__ in reference, cls
        assert " ".join(cls.fix.split()) in " ".join(reference.split()), cls


def test_benchmark_tables_come_from_the_results_files(site):
    import json

    speed = _text((site / "speed.html").read_text(encoding="utf-8"))
    assert "bench-table" not in speed
    for name in ("pages-700-7000.json", "pages-700-privacy-off.json"):
        report = json.loads((ROOT / "bench" / "results" / name).read_text())
        for size in report["sizes"]:
            assert f"{size['summary']['cold_s']:.1f}" in speed, (name, size["pages"])
    quality = _text((site / "quality.html").read_text(encoding="utf-8"))
    result = json.loads((ROOT / "bench" / "results" / "quality-nhs.json").read_text())
    learned = next(s for s in result["summary"] if s["method"] == "learned")
    assert f"{learned['f1']:.3f} ± {learned['f1_sd']:.3f}" in quality


# -- the docs' commands ----------------------------------------------------------------------------


def qcode_lines(text: str) -> list[str]:
    """Every ``qcode ...`` command line in the code blocks of a page, continuations joined."""
    found = []
    for block in BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith((".venv/bin/qcode ", "qcode ")):
                found.append(line.removeprefix(".venv/bin/"))
    return found


def test_every_qcode_line_in_the_docs_parses():
    from typer._click.exceptions import UsageError

    from docsite.reference import cli_commands

    commands = dict(cli_commands())
    lines = [(page.name, line) for page in PAGES for line in qcode_lines(page.read_text())]
    lines += [("README.md", line) for line in qcode_lines(README)]
    assert len(lines) > 30
    for where, line in lines:
        words = shlex.split(line, comments=True)
        words = words[: next((i for i, w in enumerate(words) if w in ("|", "&&", ">")), None)]
        if words[1:] == ["--help"]:
            continue
        name, args = words[1], words[2:]
        assert name in commands, f"{where}: no command {name!r}: {line}"
        if "..." in args:
            continue  # an elided example
        try:
            commands[name].make_context(f"qcode {name}", list(args), resilient_parsing=False)
        except UsageError as error:
            pytest.fail(f"{where}: {line}\n{error}")


def runnable_blocks() -> list[tuple[str, list[tuple[bool, str]]]]:
    pages = []
    for page in PAGES:
        blocks = [(bool(m["slow"]), m["code"]) for m in RUNNABLE.finditer(page.read_text())]
        if blocks:
            pages.append((str(page.relative_to(DOCS)), blocks))
    return pages


def test_the_runnable_examples_are_the_quick_ones():
    marked = runnable_blocks()
    assert {page for page, _ in marked} >= {
        "getting-started.md",
        "guides/reviewer.md",
        "guides/report-writer.md",
    }
    for page, blocks in marked:
        for slow, code in blocks:
            if not slow:
                assert "qcode run " not in code and "qcode review" not in code, page


@pytest.fixture
def sample_project(tmp_path, project_store) -> Path:
    """A copy of the sample project as a new user has it after `qcode run`: transcripts,
    codebooks and a project store holding a real run, with `qcode` and `python` on PATH."""
    for folder in ("transcripts_sample", "codebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "outputs").mkdir()
    shutil.copy(project_store, tmp_path / "outputs" / "project.sqlite")
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    for name, target in (
        ("qcode", f"{sys.executable} -m pipeline.cli"),
        ("python", sys.executable),
    ):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        shim.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize(
    ("page", "blocks"), runnable_blocks(), ids=[page for page, _ in runnable_blocks()]
)
def test_runnable_examples_run(page, blocks, sample_project):
    env = {
        **os.environ,
        "PATH": f"{sample_project / '.bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    for slow, code in blocks:
        if slow:
            continue  # parsed by test_every_qcode_line_in_the_docs_parses; see the docstring
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=sample_project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        shown = (
            f"{page}:\n{code}\n--- stdout\n{result.stdout[-2000:]}\n"
            f"--- stderr\n{result.stderr[-2000:]}"
        )
        assert result.returncode == 0, shown
        assert "Traceback" not in result.stderr, shown
