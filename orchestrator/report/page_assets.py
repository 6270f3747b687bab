"""The review page's stylesheet and script, inlined into every page.

They live in Python strings, not package data files, so an installed wheel
and a Ray working_dir copy both carry them without packaging rules.
"""

from __future__ import annotations

import json

from orchestrator.report.badges import ALL_BADGES

_BASE_CSS = """
:root { color-scheme: light; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
body { margin: 0 auto; max-width: 1400px; padding: 16px 24px 48px; background: #eceff1;
  color: #212121; font-size: 14px; }
h1 { margin: 0 0 4px; font-size: 24px; }
h2 { margin: 0 0 4px; font-size: 18px; }
h3 { margin: 8px 0 4px; font-size: 14px; color: #455a64; }
figure { margin: 0; }
code { font-size: 12px; color: #607d8b; overflow-wrap: anywhere; }
.meta { color: #607d8b; margin: 2px 0; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 4px; color: #fff;
  font-size: 12px; font-weight: 600; white-space: nowrap; }
.references { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.character { background: #fff; padding: 8px; border-radius: 6px; max-width: 560px; }
.character .images { display: flex; flex-wrap: wrap; gap: 6px; }
.character img { width: 128px; height: 128px; object-fit: cover; border-radius: 4px; }
.character figcaption { margin-top: 4px; max-width: 400px; }
nav.filters { position: sticky; top: 0; z-index: 1; display: flex; flex-wrap: wrap; gap: 6px;
  align-items: center; padding: 8px 0; background: #eceff1; border-bottom: 1px solid #cfd8dc; }
nav.filters button { border: 1px solid #90a4ae; background: #fff; border-radius: 14px;
  padding: 3px 10px; cursor: pointer; font: inherit; }
nav.filters button[aria-pressed="true"] { background: #263238; border-color: #263238; color: #fff; }
.token { margin-left: auto; }
section.scene { background: #fff; border-radius: 8px; padding: 12px 16px; margin: 16px 0; }
.prompt { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; }
.chain ol { display: flex; gap: 8px; list-style: none; padding: 0; margin: 0; overflow-x: auto; }
.chain li { flex: none; width: 160px; font-size: 12px; }
.chain a { color: inherit; text-decoration: none; }
.chain img, .chain .no-image { width: 160px; height: 160px; }
article.frame { border-top: 1px solid #eceff1; padding: 10px 0; }
article.frame > header { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.attempts { display: flex; gap: 12px; overflow-x: auto; padding: 8px 0; }
figure.attempt { flex: none; width: 240px; padding: 4px; border: 2px solid transparent;
  border-radius: 6px; }
figure.attempt.kept { border-color: #263238; }
figure.attempt img, figure.attempt .no-image { width: 240px; height: 240px; }
img, .no-image { display: block; object-fit: contain; background: #263238; border-radius: 4px; }
.no-image { display: flex; align-items: center; justify-content: center; color: #cfd8dc;
  font-size: 13px; text-align: center; }
figcaption { font-size: 12px; }
table.scores { width: 100%; table-layout: fixed; border-collapse: collapse; margin-top: 4px; }
table.scores td, table.scores th { padding: 1px 2px; text-align: left; font-weight: normal;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
table.scores th { color: #607d8b; }
table.scores .number { width: 42px; }
table.scores .verdict { width: 64px; }
table.scores td.detail { white-space: normal; overflow-wrap: anywhere; color: #607d8b; }
.error { color: #7f0000; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
.review { display: flex; gap: 8px; align-items: center; }
.review button { font: inherit; padding: 3px 12px; cursor: pointer; }
.review[data-mark="approve"] .approve, .review[data-mark="reject"] .reject {
  outline: 3px solid #263238; }
footer { color: #607d8b; margin-top: 24px; }
[hidden] { display: none !important; }
"""


def page_css() -> str:
    """Return the page stylesheet, with one `.badge-<status>` colour rule per badge."""
    badge_rules = "\n".join(
        f".badge-{badge.key} {{ background: {badge.colour}; }}" for badge in ALL_BADGES
    )
    return _BASE_CSS + badge_rules + "\n"


# The JSON field of the service's rating request body: {"rating": "approve"}.
RATING_FIELD = "rating"

# Plain script, no libraries. The filter works everywhere; the review buttons
# only exist on the served page, whose <body> carries data-api-base.
_SCRIPT_TEMPLATE = """
(() => {
  'use strict';
  const frames = Array.from(document.querySelectorAll('article.frame'));
  const scenes = Array.from(document.querySelectorAll('section.scene'));
  const filterButtons = Array.from(document.querySelectorAll('nav.filters button'));

  function applyFilter(status) {
    for (const button of filterButtons) {
      button.setAttribute('aria-pressed', String(button.dataset.filter === status));
    }
    for (const frame of frames) {
      frame.hidden = status !== 'all' && frame.dataset.status !== status;
    }
    for (const scene of scenes) {
      scene.hidden = scene.querySelector('article.frame:not([hidden])') === null;
    }
  }
  for (const button of filterButtons) {
    button.addEventListener('click', () => applyFilter(button.dataset.filter));
  }

  const apiBase = document.body.dataset.apiBase;
  if (apiBase === undefined) {
    return;
  }
  const ratingField = RATING_FIELD_JSON;
  const tokenInput = document.getElementById('api-token');
  const tokenKey = 'onmodel-api-token';
  tokenInput.value = sessionStorage.getItem(tokenKey) || '';
  tokenInput.addEventListener('input', () => {
    sessionStorage.setItem(tokenKey, tokenInput.value.trim());
  });

  async function rate(box, value) {
    const status = box.querySelector('.review-status');
    const headers = { 'Content-Type': 'application/json' };
    const token = tokenInput.value.trim();
    if (token) {
      headers.Authorization = 'Bearer ' + token;
    }
    const url = apiBase + '/v1/assets/' + encodeURIComponent(box.dataset.assetId) + '/rating';
    status.textContent = 'saving...';
    let response;
    try {
      const body = JSON.stringify({ [ratingField]: value });
      response = await fetch(url, { method: 'POST', headers, body });
    } catch (error) {
      status.textContent = 'not saved: ' + error.message;
      return;
    }
    if (!response.ok) {
      const hint = response.status === 401 ? ' (enter the API token at the top)' : '';
      status.textContent = 'not saved: HTTP ' + response.status + hint;
      return;
    }
    box.dataset.mark = value;
    status.textContent = value === 'approve' ? 'approved' : 'rejected';
  }
  for (const box of document.querySelectorAll('.review')) {
    for (const button of box.querySelectorAll('button')) {
      button.addEventListener('click', () => rate(box, button.dataset.rating));
    }
  }
})();
"""


def page_script() -> str:
    """Return the page script with the rating request's field name filled in."""
    return _SCRIPT_TEMPLATE.replace("RATING_FIELD_JSON", json.dumps(RATING_FIELD))
