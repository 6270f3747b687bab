"""The review page: one self-contained HTML file for a run.

Every image is inlined as a base64 JPEG thumbnail and the stylesheet and
script are inline, so the file works opened from disk with no network. A
Content-Security-Policy allows only inline data: images and the page's own
nonce-tagged style and script, so a browser loads nothing else even if a
string were ever left unescaped. Every user string (names, prompts, errors)
goes through `html.escape`.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Mapping
from html import escape
from urllib.parse import urlsplit

from orchestrator.report.badges import ALL_BADGES, Badge, attempt_badge
from orchestrator.report.data import FrameReport, RunReport
from orchestrator.report.images import ImageSource, decode, jpeg_data_uri
from orchestrator.report.page_assets import page_css, page_script
from schemas.catalog import AttemptRow
from schemas.records import CharacterScore

logger = logging.getLogger(__name__)

# Rating values the review API takes, with the words the page shows for them.
RATING_LABELS = {"approve": "approved", "reject": "rejected"}


def render_page(
    report: RunReport,
    images: ImageSource,
    *,
    api_base: str | None = None,
    ratings: Mapping[str, str] | None = None,
) -> str:
    """Render the review page of `report`.

    `api_base` None gives the file version, which has no review buttons. A
    string gives the served version: approve and reject buttons POST to
    `{api_base}/v1/assets/{id}/rating`; "" means the page's own origin.
    `ratings` maps asset ids to their current rating (approve or reject),
    which the served version shows next to the buttons.
    """
    if api_base is not None:
        api_base = _check_base(api_base)
    nonce = secrets.token_urlsafe(18)
    run = report.run
    names = {character.id: character.name for character in report.characters}
    body_attributes = "" if api_base is None else f' data-api-base="{escape(api_base)}"'
    # None on the file version: frames get no review buttons.
    review = None if api_base is None else dict(ratings or {})

    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_policy(nonce, api_base)}">',
        f"<title>{escape(run.storyboard_name)}: run {escape(run.id[:8])}</title>",
        f'<style nonce="{nonce}">{page_css()}</style>',
        f"</head><body{body_attributes}>",
        _run_header(report),
        _references(report),
        _filters(report, api_base is not None),
        "<main>",
        *(
            _scene(scene_id, frames, names, images, run.id, review)
            for scene_id, frames in report.scenes()
        ),
        "</main>",
        _footer(report, api_base is not None),
        f'<script nonce="{nonce}">{page_script()}</script>',
        "</body></html>",
    ]
    return "\n".join(parts)


def _check_base(api_base: str) -> str:
    if api_base and not api_base.startswith(("/", "http://", "https://")):
        raise ValueError(
            f"api_base {api_base!r} is invalid; use '' (same origin), a path such as '/onmodel' "
            "or an http(s) URL"
        )
    return api_base.rstrip("/")


def _policy(nonce: str, api_base: str | None) -> str:
    directives = [
        "default-src 'none'",
        "img-src data:",
        f"style-src 'nonce-{nonce}'",
        f"script-src 'nonce-{nonce}'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
    if api_base is not None:
        sources = ["'self'"]
        if api_base.startswith(("http://", "https://")):
            parts = urlsplit(api_base)
            sources.append(f"{parts.scheme}://{parts.netloc}")
        directives.append("connect-src " + " ".join(sources))
    return escape("; ".join(directives))


def _run_header(report: RunReport) -> str:
    run, summary = report.run, report.summary
    finished = run.finished_at.strftime("%Y-%m-%d %H:%M UTC") if run.finished_at else "not finished"
    return (
        '<header class="run">'
        f"<h1>{escape(run.storyboard_name)}</h1>"
        f'<p class="meta">run <code>{escape(run.id)}</code> | {escape(summary.state.value)} | '
        f"created {run.created_at:%Y-%m-%d %H:%M UTC} | finished {escape(finished)}</p>"
        f'<p class="meta">{summary.frames} frames: {summary.accepted} accepted '
        f"({summary.unscored} unscored), {summary.needs_review} need review, "
        f"{summary.failed} failed, {summary.pending} pending</p>"
        + (f'<p class="error">{escape(run.error)}</p>' if run.error else "")
        + "</header>"
    )


def _references(report: RunReport) -> str:
    figures = []
    for character in report.characters:
        thumbnails = "".join(
            f'<img src="{jpeg_data_uri(decode(data))}" alt="reference {index + 1} of '
            f'{escape(character.name)}">'
            for index, data in enumerate(character.images)
        )
        description = f"<br>{escape(character.description)}" if character.description else ""
        figures.append(
            f'<figure class="character"><div class="images">{thumbnails}</div>'
            f"<figcaption><strong>{escape(character.name)}</strong> "
            f"<code>{escape(character.id)}</code>{description}</figcaption></figure>"
        )
    if report.style_image is not None:
        description = escape(report.style_description) or "style reference"
        figures.append(
            f'<figure class="character"><div class="images"><img src="'
            f'{jpeg_data_uri(decode(report.style_image))}" alt="style reference"></div>'
            f"<figcaption><strong>style</strong><br>{description}</figcaption></figure>"
        )
    return '<section class="references" aria-label="references">' + "".join(figures) + "</section>"


def _filters(report: RunReport, served: bool) -> str:
    counts = Counter(frame.badge.key for frame in report.frames)
    buttons = [
        f'<button type="button" data-filter="all" aria-pressed="true">all ({len(report.frames)})'
        "</button>"
    ]
    for badge in ALL_BADGES:
        if counts[badge.key]:
            buttons.append(
                f'<button type="button" data-filter="{badge.key}" aria-pressed="false">'
                f"{escape(badge.label)} ({counts[badge.key]})</button>"
            )
    token = ""
    if served:
        token = (
            '<label class="token">API token <input id="api-token" type="password" '
            'autocomplete="off" placeholder="if the service needs one"></label>'
        )
    return (
        '<nav class="filters" aria-label="filter frames"><span>Show:</span>'
        + "".join(buttons)
        + token
        + "</nav>"
    )


def _badge(badge: Badge) -> str:
    return f'<span class="badge badge-{badge.key}">{escape(badge.label)}</span>'


def _image(images: ImageSource, key: str | None, run_id: str, alt: str, missing: str) -> str:
    uri = images.data_uri(key, run_id) if key else None
    if uri is None:
        return f'<div class="no-image">{escape(missing)}</div>'
    return f'<img src="{uri}" alt="{escape(alt)}">'


def _scene(
    scene_id: str,
    frames: list[FrameReport],
    names: dict[str, str],
    images: ImageSource,
    run_id: str,
    review: dict[str, str] | None,
) -> str:
    first = frames[0].frame
    characters = ", ".join(names.get(c, c) for c in first.characters) or "no characters"
    parts = [
        f'<section class="scene" id="scene-{escape(scene_id)}">',
        f"<h2>{escape(scene_id)}</h2>",
        f'<p class="prompt">{escape(first.prompt)}</p>',
        f'<p class="meta">characters: {escape(characters)}</p>',
    ]
    chains: dict[int, list[FrameReport]] = {}
    for frame in frames:
        chains.setdefault(frame.frame.variant, []).append(frame)
    for variant, chain in chains.items():
        if len(chain) > 1:
            parts.append(_chain(variant, chain, images, run_id))
    parts.extend(_frame(frame, names, images, run_id, review) for frame in frames)
    parts.append("</section>")
    return "\n".join(parts)


def _chain(variant: int, chain: list[FrameReport], images: ImageSource, run_id: str) -> str:
    """Draw an edit chain as a strip: the kept image of each step, in step order."""
    items = []
    for frame in sorted(chain, key=lambda f: f.frame.edit_step):
        row = frame.frame
        label = "original" if row.edit_step == 0 else f"edit {row.edit_step}"
        image = _image(
            images,
            frame.image_key,
            run_id,
            f"{label} of variant {variant}",
            f"no image ({frame.badge.label})",
        )
        items.append(
            f'<li><a href="#frame-{escape(row.key)}">{image}</a>'
            f"<strong>{label}</strong> {_badge(frame.badge)}<br>{escape(row.prompt)}</li>"
        )
    return (
        f'<div class="chain"><h3>edit chain, variant {variant}</h3><ol>{"".join(items)}</ol></div>'
    )


def _frame(
    frame: FrameReport,
    names: dict[str, str],
    images: ImageSource,
    run_id: str,
    review: dict[str, str] | None,
) -> str:
    row, asset = frame.frame, frame.asset
    kept_number = asset.attempt if asset is not None else None
    header = [
        _badge(frame.badge),
        f"<span>variant {row.variant} | step {row.edit_step} | state {escape(row.state.value)}"
        f" | score {_number(frame.score)}"
        f" | {len(frame.attempts)} attempt{'s' if len(frame.attempts) != 1 else ''}</span>",
        f"<code>frame {escape(row.key)}</code>",
    ]
    if asset is not None:
        header.append(f"<code>asset {escape(asset.id)}</code>")
    parts = [
        f'<article class="frame" id="frame-{escape(row.key)}" data-status="{frame.badge.key}">',
        f"<header>{''.join(header)}</header>",
    ]
    if row.edit_step > 0:
        parts.append(f'<p class="prompt">edit: {escape(row.prompt)}</p>')
    if row.error:
        parts.append(f'<p class="error">{escape(row.error)}</p>')
    attempts = "".join(
        _attempt(attempt, attempt.number == kept_number, names, images, run_id)
        for attempt in frame.attempts
    )
    parts.append(f'<div class="attempts">{attempts or "<p>no attempts</p>"}</div>')
    if review is not None and asset is not None:
        parts.append(_review_buttons(asset.id, review.get(asset.id)))
    parts.append("</article>")
    return "\n".join(parts)


def _review_buttons(asset_id: str, rating: str | None) -> str:
    mark = f' data-mark="{escape(rating)}"' if rating in RATING_LABELS else ""
    status = RATING_LABELS.get(rating or "", "")
    return (
        f'<div class="review" data-asset-id="{escape(asset_id)}"{mark}>'
        '<button type="button" class="approve" data-rating="approve">Approve</button>'
        '<button type="button" class="reject" data-rating="reject">Reject</button>'
        f'<span class="review-status" role="status">{status}</span></div>'
    )


def _attempt(
    attempt: AttemptRow, kept: bool, names: dict[str, str], images: ImageSource, run_id: str
) -> str:
    badge = attempt_badge(attempt)
    image = _image(
        images, attempt.object_key, run_id, f"attempt {attempt.number}", f"no image ({badge.label})"
    )
    seconds = f" | {attempt.seconds_generate:.1f} s" if attempt.seconds_generate is not None else ""
    caption = [
        f"<strong>attempt {attempt.number}</strong>{' (kept)' if kept else ''} {_badge(badge)}",
        f"<br>seed {attempt.seed}{seconds}",
    ]
    if attempt.scores:
        rows = "".join(_score_rows(score, names) for score in attempt.scores)
        caption.append(
            '<table class="scores"><tr><th>character</th><th class="verdict">verdict</th>'
            f'<th class="number">score</th><th class="number">min</th></tr>{rows}</table>'
        )
    if attempt.error:
        caption.append(f'<p class="error">{escape(attempt.error)}</p>')
    css_class = "attempt kept" if kept else "attempt"
    return (
        f'<figure class="{css_class}" data-status="{badge.key}">{image}'
        f"<figcaption>{''.join(caption)}</figcaption></figure>"
    )


def _score_rows(score: CharacterScore, names: dict[str, str]) -> str:
    name = escape(names.get(score.character_id, score.character_id))
    row = (
        f'<tr><td title="{name}">{name}</td><td>{escape(score.verdict.value)}</td>'
        f"<td>{_number(score.score)}</td><td>{_number(score.threshold)}</td></tr>"
    )
    if score.detail:
        row += f'<tr><td colspan="4" class="detail">{escape(score.detail)}</td></tr>'
    return row


def _number(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def _footer(report: RunReport, served: bool) -> str:
    note = (
        "Approve and reject set the asset's review mark in the catalog."
        if served
        else "Approve and reject buttons appear on the page that the OnModel HTTP service "
        f"serves at /runs/{escape(report.run.id)}/report."
    )
    return (
        f"<footer>Generated {report.generated_at:%Y-%m-%d %H:%M:%S UTC} by onmodel report. "
        f"{note}</footer>"
    )
