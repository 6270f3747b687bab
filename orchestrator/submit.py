"""Turn a loaded spec into a run in the catalog, and load a run back for running."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from orchestrator.planner import plan
from orchestrator.spec import LoadedSpec
from schemas.catalog import RunRow
from schemas.records import ReferenceImage
from schemas.storyboard import Storyboard
from storage.catalog import Catalog
from storage.objects import ObjectStore

logger = logging.getLogger(__name__)

# Run option that names the component that starts a submitted run.
ORIGIN_OPTION = "origin"


@dataclass(frozen=True)
class RunContext:
    """The inputs of one run's driver, all read from the catalog and the object store."""

    run: RunRow
    storyboard: Storyboard
    references: dict[str, list[ReferenceImage]]
    style: ReferenceImage | None


@dataclass(frozen=True)
class StoredSpec:
    """A storyboard stored in the catalog, with the options each of its runs gets."""

    storyboard_id: str
    options: dict[str, Any]


def store_spec(catalog: Catalog, store: ObjectStore, loaded: LoadedSpec) -> StoredSpec:
    """Store a loaded spec's references and its storyboard, without creating a run.

    The reference images go to the object store first, so a run row never
    points at an object that is missing, and so a run can be resumed or
    served from any machine without the spec's folder. Later edits of the
    spec file do not change what the stored storyboard plans.
    """
    references: dict[str, list[dict[str, str]]] = {}
    for character_id, images in loaded.references.items():
        references[character_id] = [
            {"sha256": image.sha256, "key": store.put(image.png)} for image in images
        ]
    style = None
    if loaded.style is not None:
        style = {"sha256": loaded.style.sha256, "key": store.put(loaded.style.png)}

    spec = loaded.storyboard.model_dump(mode="json")
    storyboard_id = catalog.put_storyboard(loaded.storyboard.name, spec, loaded.sha256)
    options: dict[str, Any] = {
        "references": references,
        "style": style,
        "spec_sha256": loaded.sha256,
    }
    return StoredSpec(storyboard_id=storyboard_id, options=options)


def submit(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec, *, origin: str | None = None
) -> str:
    """Store references, the storyboard and the planned frames; return the new run id.

    `origin` names the component that will start the run, such as the HTTP
    service, which looks for its own runs that never started after a restart.
    """
    stored = store_spec(catalog, store, loaded)
    storyboard_id = stored.storyboard_id
    options = stored.options
    if origin is not None:
        options = {**options, ORIGIN_OPTION: origin}
    # Batched insert: the plan is a generator, so large matrix plans are never held whole.
    run_id = catalog.create_run_batched(
        storyboard_id, plan(loaded.storyboard, loaded.sha256, storyboard_id), options
    )
    logger.info("run=%s submitted for storyboard %r", run_id, loaded.storyboard.name)
    return run_id


def load_context(catalog: Catalog, store: ObjectStore, run_id: str) -> RunContext:
    run = catalog.get_run(run_id)
    row = catalog.get_storyboard(run.storyboard_id)
    storyboard = Storyboard.model_validate(row.spec)
    references = {
        character_id: [
            ReferenceImage(sha256=item["sha256"], png=store.get(item["key"])) for item in items
        ]
        for character_id, items in run.options.get("references", {}).items()
    }
    style_item = run.options.get("style")
    style = (
        ReferenceImage(sha256=style_item["sha256"], png=store.get(style_item["key"]))
        if style_item
        else None
    )
    return RunContext(run=run, storyboard=storyboard, references=references, style=style)
