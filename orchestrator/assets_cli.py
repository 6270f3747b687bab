"""`onmodel assets`: query, show and export cataloged assets, and put review marks on them.

The filter options mirror the query parameters of `GET /v1/assets`, with
dashes instead of underscores (`--min-score` is `min_score`).
"""

from __future__ import annotations

import csv
import getpass
import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator import output
from orchestrator.app_state import open_backends
from orchestrator.output import user_errors
from schemas.catalog import AssetRow
from storage.filters import parse_filters
from storage.objects import ObjectStore
from storage.queries import DEFAULT_PAGE_SIZE, DEFAULT_SORT, MAX_PAGE_SIZE, SORT_KEYS
from storage.reviews import MarkKind, summarize_marks

assets_app = typer.Typer(help="Query, export and review cataloged assets.", no_args_is_help=True)

CSV_COLUMNS = (
    "id",
    "run_id",
    "storyboard_name",
    "scene_id",
    "variant",
    "edit_step",
    "attempt",
    "state",
    "verdict",
    "score",
    "seed",
    "backend",
    "model",
    "created_at",
    "uri",
)


def register(app: typer.Typer) -> None:
    app.add_typer(assets_app, name="assets")


def default_author() -> str:
    """Return the OS user name, the author of review marks made from this machine."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # Containers often run as a uid without a passwd entry.
        return "unknown"


AuthorOption = Annotated[
    str | None, typer.Option("--author", help="Who makes the mark (default: the OS user).")
]


# Listing


@assets_app.command("list")
@user_errors
def assets_list(
    run: Annotated[str | None, typer.Option(help="Run id or unique id prefix.")] = None,
    storyboard: Annotated[
        str | None, typer.Option(help="Storyboard id, id prefix or name.")
    ] = None,
    scene: Annotated[str | None, typer.Option(help="Scene id from the spec.")] = None,
    character: Annotated[str | None, typer.Option(help="Character id from the spec.")] = None,
    verdict: Annotated[
        str | None,
        typer.Option(help="on_model, drifted, no_face, missing, copy, unscored or needs_review."),
    ] = None,
    min_score: Annotated[float | None, typer.Option(help="Lowest identity score.")] = None,
    max_score: Annotated[float | None, typer.Option(help="Highest identity score.")] = None,
    backend: Annotated[str | None, typer.Option(help="Generator backend, e.g. tiny.")] = None,
    model: Annotated[str | None, typer.Option(help="Model id or path as in the spec.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the kept attempt.")] = None,
    tag: Annotated[str | None, typer.Option(help="Review tag.")] = None,
    rating: Annotated[
        str | None, typer.Option(help="Latest rating: approve, reject or unrated.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after this ISO 8601 time (UTC if no zone).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Created before this ISO 8601 time (UTC if no zone).")
    ] = None,
    q: Annotated[str | None, typer.Option("--q", help="Text the prompt contains.")] = None,
    sort: Annotated[
        str,
        typer.Option(help=f"One of {', '.join(SORT_KEYS)}; prefix '-' for descending."),
    ] = DEFAULT_SORT,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_PAGE_SIZE, help="Assets per page.")
    ] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None, typer.Option(help="Start after the page that printed this cursor.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")] = False,
) -> None:
    """List cataloged assets, filtered and sorted, one page at a time.

    When more assets match, the cursor of the next page is printed on stderr.
    """
    if as_json and as_csv:
        output.error("--json and --csv exclude each other; pick one")
        raise typer.Exit(2)
    filters = parse_filters(
        {
            "run": run,
            "storyboard": storyboard,
            "scene": scene,
            "character": character,
            "verdict": verdict,
            "min_score": min_score,
            "max_score": max_score,
            "backend": backend,
            "model": model,
            "seed": seed,
            "tag": tag,
            "rating": rating,
            "since": since,
            "until": until,
            "q": q,
        }
    )
    backends = open_backends()
    page = backends.catalog.query_assets(filters, sort=sort, limit=limit, cursor=cursor)

    if as_json:
        output.json_line([output.asset_json(asset, backends.store) for asset in page.items])
    elif as_csv:
        write_csv(page.items, backends.store)
    else:
        output.assets_table(page.items)
    if page.next_cursor is not None:
        output.stderr.print(
            f"more assets match; next page: --cursor {page.next_cursor}", markup=False
        )


def write_csv(assets: list[AssetRow], store: ObjectStore) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for asset in assets:
        row: dict[str, Any] = asset.model_dump(mode="json")
        row["uri"] = store.uri(asset.object_key)
        writer.writerow(["" if row[column] is None else row[column] for column in CSV_COLUMNS])


# One asset


@assets_app.command("show")
@user_errors
def assets_show(
    asset_id: Annotated[str, typer.Argument(help="Asset id or unique prefix.")],
) -> None:
    """Show one asset with its full provenance and review marks as JSON."""
    backends = open_backends()
    asset = backends.catalog.get_asset(asset_id)
    marks = backends.catalog.list_review_marks(asset.id)
    data = output.asset_json(asset, backends.store)
    data["review"] = summarize_marks(marks).model_dump(mode="json")
    data["marks"] = [mark.model_dump(mode="json") for mark in marks]
    output.line(json.dumps(data, indent=2))


@assets_app.command("export")
@user_errors
def assets_export(
    asset_id: Annotated[str, typer.Argument(help="Asset id or unique prefix.")],
    dest: Annotated[Path, typer.Argument(help="File or existing folder to write the image to.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Copy an asset's image out of the object store."""
    backends = open_backends()
    asset = backends.catalog.get_asset(asset_id)
    target = dest / f"{asset.scene_id}_{asset.id[:8]}.png" if dest.is_dir() else dest
    if not target.parent.is_dir():
        output.error(f"folder not found: {str(target.parent)!r}; create it first")
        raise typer.Exit(2)
    if target.exists() and not force:
        output.error(f"file exists: {str(target)!r}; pass --force to overwrite it")
        raise typer.Exit(2)
    data = backends.store.get(asset.object_key)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    shutil.move(tmp, target)
    output.line(str(target))


# Review marks


def _add_mark(asset_id: str, kind: MarkKind, value: str, author: str | None) -> None:
    backends = open_backends()
    mark = backends.catalog.add_review_mark(asset_id, kind, value, author or default_author())
    # A comment can be long, so only its length is echoed.
    echoed = value if kind is not MarkKind.COMMENT else f"{len(mark.value)} characters"
    output.line(f"asset {mark.asset_id}: {kind.value} {echoed!r} by {mark.author} (mark {mark.id})")


@assets_app.command("tag")
@user_errors
def assets_tag(
    asset_id: Annotated[str, typer.Argument(help="Asset id or unique prefix.")],
    tag: Annotated[str, typer.Argument(help="Tag without spaces, up to 64 characters.")],
    author: AuthorOption = None,
) -> None:
    """Tag an asset; `assets list --tag TAG` finds it."""
    _add_mark(asset_id, MarkKind.TAG, tag, author)


@assets_app.command("rate")
@user_errors
def assets_rate(
    asset_id: Annotated[str, typer.Argument(help="Asset id or unique prefix.")],
    rating: Annotated[str, typer.Argument(help="approve or reject.")],
    author: AuthorOption = None,
) -> None:
    """Approve or reject an asset; the latest rating counts for `assets list --rating`."""
    _add_mark(asset_id, MarkKind.RATING, rating, author)


@assets_app.command("comment")
@user_errors
def assets_comment(
    asset_id: Annotated[str, typer.Argument(help="Asset id or unique prefix.")],
    text: Annotated[str, typer.Argument(help="Comment, up to 4000 characters.")],
    author: AuthorOption = None,
) -> None:
    """Comment on an asset."""
    _add_mark(asset_id, MarkKind.COMMENT, text, author)


@assets_app.command("marks")
@user_errors
def assets_marks(
    asset_id: Annotated[str, typer.Argument(help="Asset id or unique prefix.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List an asset's tags, ratings and comments, oldest first."""
    backends = open_backends()
    marks = backends.catalog.list_review_marks(asset_id)
    if as_json:
        output.json_line([mark.model_dump(mode="json") for mark in marks])
        return
    for mark in marks:
        created = mark.created_at.strftime("%Y-%m-%d %H:%M")
        output.line(f"{mark.id}\t{created}\t{mark.author}\t{mark.kind.value}\t{mark.value}")
