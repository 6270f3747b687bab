"""The review page's HTML: escaping, self-containment, attempts, chains and buttons."""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser

import pytest
from conftest import ReportRun
from report_runs import GENERATION_ERROR, HOSTILE_NAME, SCRIPT_PROMPT

from orchestrator.report import ImageSource, RunReport, load_report, render_page
from schemas.records import AttemptState


class Tags(HTMLParser):
    """Every start tag of a document with its attributes, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **expected: str) -> list[dict[str, str | None]]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and all(attrs.get(k.replace("_", "-")) == v for k, v in expected.items())
        ]


def classes(attrs: dict[str, str | None]) -> list[str]:
    return (attrs.get("class") or "").split()


@pytest.fixture(scope="module")
def report(report_run: ReportRun) -> RunReport:
    return load_report(report_run.backends.catalog, report_run.backends.store, report_run.run_id)


@pytest.fixture(scope="module")
def page(report: RunReport, report_run: ReportRun) -> str:
    return render_page(report, ImageSource(report_run.backends.store))


def test_page_escapes_user_strings(page: str) -> None:
    tags = Tags(page)

    assert "<script>alert(" not in page
    assert escape(SCRIPT_PROMPT) in page
    assert HOSTILE_NAME not in page
    assert escape(HOSTILE_NAME) in page
    assert "<b>the request</b>" not in page
    assert escape(GENERATION_ERROR) in page
    assert "add <em>rain</em>" not in page
    assert escape("report <test>") in page
    # The page's own script is the only one, and no element carries an event handler.
    assert len(tags.find("script")) == 1
    assert all(not key.startswith("on") for _, attrs in tags.tags for key in attrs)


def test_page_is_self_contained(page: str) -> None:
    tags = Tags(page)
    images = tags.find("img")

    assert images
    for attrs in images:
        assert (attrs["src"] or "").startswith("data:image/jpeg;base64,")
    for _, attrs in tags.tags:
        assert not (attrs.get("href") or "#").startswith(("http:", "https:", "//")), attrs
    assert "url(" not in page
    assert "@import" not in page
    policy = tags.find("meta", http_equiv="Content-Security-Policy")[0]["content"] or ""
    assert "default-src 'none'" in policy
    assert "img-src data:" in policy
    assert "connect-src" not in policy


def test_page_lists_every_attempt(page: str, report_run: ReportRun, report: RunReport) -> None:
    attempts = report_run.backends.catalog.list_attempts(report_run.run_id)
    figures = [attrs for attrs in Tags(page).find("figure") if "attempt" in classes(attrs)]

    assert len(figures) == len(attempts) == sum(len(f.attempts) for f in report.frames)
    assert [f["data-status"] for f in figures] == [
        (a.verdict.value if a.state is AttemptState.DONE and a.verdict else a.state.value)
        for a in attempts
    ]
    kept_figures = [attrs for attrs in figures if "kept" in classes(attrs)]
    assert len(kept_figures) == len([f for f in report.frames if f.asset is not None])
    for attempt in attempts:
        for score in attempt.scores:
            assert f"<td>{score.score:.3f}</td>" in page


def test_failed_attempts_show_their_error(page: str, report: RunReport) -> None:
    failed = [a for f in report.frames for a in f.attempts if a.state is AttemptState.FAILED]

    assert len(failed) == 2
    assert page.count(f'<p class="error">GenerationError: {escape(GENERATION_ERROR)}</p>') == 3


def test_edit_chain_strip_is_in_step_order(page: str, report: RunReport) -> None:
    chain = sorted(
        (f.frame for f in report.frames if f.frame.scene_id == "s03-table"),
        key=lambda row: row.edit_step,
    )
    strip = page[page.index('<div class="chain">') :]
    strip = strip[: strip.index("</ol>")]

    assert [row.edit_step for row in chain] == [0, 1, 2]
    assert chain[1].parent_key == chain[0].key
    assert chain[2].parent_key == chain[1].key
    assert re.findall(r'href="#frame-([0-9a-f]+)"', strip) == [row.key for row in chain]
    assert page.count('<div class="chain">') == 1


def test_filter_buttons_count_frames_by_status(page: str) -> None:
    buttons = Tags(page).find("button")

    assert [b["data-filter"] for b in buttons] == ["all", "on_model", "needs_review", "failed"]
    assert "all (7)</button>" in page
    assert "needs review (5)</button>" in page
    assert "failed (1)</button>" in page


def test_file_page_has_no_review_buttons(page: str) -> None:
    tags = Tags(page)

    assert tags.find("body") == [{}]
    assert not [attrs for attrs in tags.find("div") if "review" in classes(attrs)]
    assert 'id="api-token"' not in page


def test_served_page_has_review_buttons(report: RunReport, report_run: ReportRun) -> None:
    served = render_page(report, ImageSource(report_run.backends.store), api_base="/onmodel/")
    tags = Tags(served)
    boxes = [attrs for attrs in tags.find("div") if "review" in classes(attrs)]
    assets = report_run.backends.catalog.list_assets(run_id=report_run.run_id)

    assert tags.find("body") == [{"data-api-base": "/onmodel"}]
    assert sorted(box["data-asset-id"] or "" for box in boxes) == sorted(a.id for a in assets)
    assert len(tags.find("button", data_rating="approve")) == len(assets)
    assert len(tags.find("button", data_rating="reject")) == len(assets)
    policy = tags.find("meta", http_equiv="Content-Security-Policy")[0]["content"] or ""
    assert "connect-src 'self'" in policy


def test_served_page_allows_absolute_api_origin(report: RunReport, report_run: ReportRun) -> None:
    served = render_page(
        report, ImageSource(report_run.backends.store), api_base="http://127.0.0.1:8123/api"
    )

    policy = Tags(served).find("meta", http_equiv="Content-Security-Policy")[0]["content"]

    assert "connect-src 'self' http://127.0.0.1:8123" in (policy or "")


@pytest.mark.parametrize("api_base", ["javascript:alert(1)", "onmodel", "ftp://host"])
def test_page_rejects_invalid_api_base(
    api_base: str, report: RunReport, report_run: ReportRun
) -> None:
    with pytest.raises(ValueError, match="api_base .* is invalid"):
        render_page(report, ImageSource(report_run.backends.store), api_base=api_base)
