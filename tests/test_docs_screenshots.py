"""The docs' screenshots, taken in a real browser so they show the pages as they are now.

Each test drives Debian's Chromium (as the review page's browser tests do) over the real app or
a real report built from the sample project, checks the page shows what the docs say it shows,
and writes the picture into docs/img/, where the docs use it. Commit the new pictures when the
pages change.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.review import create_app
from pipeline.settings import Settings
from tests.conftest import ROOT
from tests.test_review_web import browser, serving, units_with_suggestions  # noqa: F401

IMAGES = ROOT / "docs" / "img"
VIEWPORT = {"width": 1300, "height": 860}


def save_screenshot(page, name: str) -> Path:
    """Write docs/img/NAME and check it is a real picture, not an empty page."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / name
    page.screenshot(path=str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{name} looks empty"
    return path


@pytest.fixture
def new_page(browser):  # noqa: F811 (the module-scoped Chromium of the review tests)
    contexts = []
    errors: list[str] = []

    def make(base_url: str | None = None):
        context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


@pytest.mark.required
def test_review_page_screenshots(new_page, project_store):
    with serving(create_app(project_store)) as url:
        page = new_page(url)
        page.goto("/")
        page.fill("#name", "Ann")
        with page.expect_navigation():
            page.click("#save-name")
        # Review two units by keyboard, as the getting-started page tells a new reviewer to.
        page.goto("/")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        for _ in range(2):
            assert "/unit/" in page.url
            page.keyboard.press("1")
            with page.expect_navigation():
                page.keyboard.press("d")  # done: the other suggestions rejected, next unit
        page.goto("/")
        assert re.search(r"\b2 of \d+ units reviewed", page.inner_text("body"))  # both saved
        save_screenshot(page, "review-queue.png")

        unit_id = units_with_suggestions(project_store, 2)[2]
        page.goto(f"/unit/{unit_id}")
        assert page.locator("#unit-form").count() == 1
        assert "Accept" in page.inner_text("body")
        save_screenshot(page, "review-unit.png")


@pytest.mark.required
def test_report_page_screenshot(new_page, project_store, cache_dir, tmp_path):
    from pipeline.report.batch import draft_reports

    drafts = draft_reports(
        project_store, tmp_path / "reports", ["html"], True, Settings(cache_dir=cache_dir)
    )
    html = next(p for p in drafts.paths if p.name == "theme_report.html")
    page = new_page()
    page.goto(html.as_uri())
    body = page.inner_text("body")
    assert "DRAFT" in body and "FOR HUMAN REVIEW" in body
    save_screenshot(page, "report.png")
