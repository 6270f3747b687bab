"""`onmodel edit` and `onmodel assets lineage`: local edits of assets and their ancestry.

User errors (unknown asset, unknown character, empty instruction) exit with
code 2 and one line on stderr. An edit whose frame failed or was moderated
exits with code 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from orchestrator import output
from orchestrator.app_state import Backends, open_backends
from orchestrator.edit import create_edit_run, lineage
from orchestrator.output import user_errors

F = TypeVar("F", bound=Callable[..., Any])


def _split_ids(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


@user_errors
def edit(
    asset_id: Annotated[str, typer.Argument(help="Asset to edit (id or a unique prefix).")],
    instruction: Annotated[
        str,
        typer.Argument(help='What to change, e.g. "replace the text on the sign with OPEN LATE".'),
    ],
    scene_characters: Annotated[
        str | None,
        typer.Option(
            "--scene-characters",
            help=(
                "Comma-separated character ids that the identity gate checks "
                "(default: the asset's characters)."
            ),
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object at the end instead of tables.")
    ] = False,
) -> None:
    """Edit a cataloged asset with an instruction; the result is a new asset linked to it."""
    backends = open_backends()
    run_id = create_edit_run(backends, asset_id, instruction, _split_ids(scene_characters))
    if not as_json:
        output.line(run_id)
    summary = _run_to_end(backends, run_id, as_json)

    frame = backends.catalog.list_frames(run_id)[0]
    source_id = backends.catalog.get_run(run_id).options["edit"]["source_asset_id"]
    if as_json:
        output.json_line(
            {
                **summary.model_dump(mode="json"),
                "asset_id": frame.asset_id,
                "source_asset_id": source_id,
                "frame_state": frame.state.value,
                "error": frame.error,
            }
        )
    else:
        output.summary_table(summary)
        if frame.asset_id is not None:
            output.line(f"asset {frame.asset_id} edits {source_id}")
        else:
            output.error(f"edit of asset {source_id} ended {frame.state.value}: {frame.error}")
    if frame.asset_id is None:
        raise typer.Exit(1)


def _run_to_end(backends: Backends, run_id: str, as_json: bool) -> Any:
    from orchestrator.runner import Runner

    with output.RunProgress(enabled=not as_json) as progress:
        runner = Runner(backends.settings, backends.catalog, backends.store, listener=progress)
        try:
            return runner.run(run_id)
        finally:
            runner.shutdown()


@user_errors
def lineage_command(
    asset_id: Annotated[str, typer.Argument(help="Asset id (or a unique prefix).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the chain as one JSON list.")
    ] = False,
) -> None:
    """Show the edit chain that led to an asset, root first, ending with the asset."""
    backends = open_backends()
    chain = lineage(backends.catalog, asset_id)
    if as_json:
        output.json_line([output.asset_json(asset, backends.store) for asset in chain])
    else:
        output.assets_table(chain)


def _assets_group(app: typer.Typer) -> typer.Typer | None:
    for group in app.registered_groups:
        instance = group.typer_instance
        names = {group.name, instance.info.name if instance is not None else None}
        if "assets" in names and instance is not None:
            return instance
    return None


def register(app: typer.Typer) -> None:
    """Add `edit`, `lineage` and, when the `assets` group exists, `assets lineage`."""
    app.command("edit")(edit)
    # `onmodel lineage` always exists, so the command does not depend on the
    # order in which feature modules register; `assets lineage` is the same command.
    app.command("lineage")(lineage_command)
    assets = _assets_group(app)
    if assets is not None:
        assets.command("lineage")(lineage_command)
