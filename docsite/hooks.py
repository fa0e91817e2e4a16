"""MkDocs hook: add the generated reference pages and fill benchmark tables at build time.

Named in mkdocs.yml (``hooks:``). The reference pages exist only in the built site, never as
files in docs/, so they always describe the code being built.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _project_first() -> None:
    """Import this checkout's packages (pipeline, flows, bench), not an installed copy. MkDocs
    restores sys.path after loading a hook, so this runs again when the build starts."""
    if sys.path[:1] != [str(ROOT)]:
        sys.path.insert(0, str(ROOT))


_project_first()

from mkdocs.structure.files import File  # noqa: E402

from docsite.reference import PAGES, fill_quality_block, fill_tables  # noqa: E402


def on_config(config):
    _project_first()
    return config


def on_files(files, config):
    for path, generate in PAGES.items():
        files.append(File.generated(config, path, content=generate()))
    return files


def on_page_markdown(markdown, page, config, files):
    return fill_quality_block(fill_tables(markdown))
