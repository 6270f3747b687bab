"""Edit chains and local edits of cataloged assets.

An edit chain is planned from a storyboard (`scenes[].edits`): step k edits
the accepted image of step k-1, and each step's asset links to its parent.
A local edit (`onmodel edit`) starts a new chain link from any cataloged
asset: a run with one frame that is conditioned on that asset's image and
scored, like every frame, against the characters' original references.

`lineage` and `create_edit_run` are the entry points that the CLI and the
HTTP service share.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from pydantic import ValidationError

from orchestrator.app_state import Backends
from orchestrator.planner import derive_seed, frame_key
from orchestrator.spec import field_path
from schemas.catalog import AssetRow
from schemas.errors import NotFoundError, SpecError, StorageError
from schemas.records import FrameTask
from schemas.storyboard import MAX_TEXT, Backend, Storyboard
from storage.catalog import Catalog

logger = logging.getLogger(__name__)

# Longest parent chain followed. Asset rows cannot form a cycle through the
# catalog's API; the bound turns a corrupted database into an error, not a hang.
MAX_LINEAGE = 10_000


def lineage(catalog: Catalog, asset_id: str) -> list[AssetRow]:
    """Return the asset and its ancestors, root first, ending with the asset itself.

    Follows `parent_asset_id` links, which connect the steps of an edit chain
    and a local edit to the asset it edits. Accepts a unique id prefix.
    Raises NotFoundError when the asset is not in the catalog, and
    StorageError when the links loop or run longer than MAX_LINEAGE.
    """
    current = catalog.get_asset(asset_id)
    chain = [current]
    seen = {current.id}
    while current.parent_asset_id is not None:
        if len(chain) >= MAX_LINEAGE or current.parent_asset_id in seen:
            raise StorageError(
                f"asset {chain[0].id}: parent links loop or pass {MAX_LINEAGE} assets at "
                f"{current.parent_asset_id}; the catalog needs repair"
            )
        current = catalog.get_asset(current.parent_asset_id)
        seen.add(current.id)
        chain.append(current)
    chain.reverse()
    return chain


def create_edit_run(
    backends: Backends,
    asset_id: str,
    instruction: str,
    characters: list[str] | None = None,
) -> str:
    """Create a pending run that edits one cataloged asset; return the run id.

    The run reuses the source run's storyboard (its characters, style,
    consistency settings and stored references) with a single scene whose
    prompt is `instruction`. Its one frame is conditioned on the source
    asset's image, keeps the source's size, backend, model and steps, and
    links its asset to the source. `characters` are the ids checked by the
    identity gate, by default the source asset's characters.

    Raises NotFoundError for an unknown asset or a source run without stored
    references, and SpecError for an empty instruction or an unknown character.
    """
    catalog = backends.catalog
    text = instruction.strip()
    if not text:
        raise SpecError("instruction", instruction, "empty edit instruction; say what to change")
    if len(text) > MAX_TEXT:
        raise SpecError(
            "instruction",
            f"{len(text)} characters",
            f"longer than {MAX_TEXT} characters; shorten it",
        )

    # 1. The source asset, its run and its storyboard.
    source = catalog.get_asset(asset_id)
    source_run = catalog.get_run(source.run_id)
    storyboard = Storyboard.model_validate(catalog.get_storyboard(source.storyboard_id).spec)
    references: dict[str, Any] = source_run.options.get("references") or {}
    chosen = list(source.characters) if characters is None else list(dict.fromkeys(characters))

    # 2. The edit's storyboard: the source's, with one scene holding the instruction.
    seed = derive_seed(source.seed, "edit", source.id, text)
    edited = _edited_storyboard(storyboard, source, text, chosen, seed)
    missing = [c for c in chosen if c not in references]
    if missing:
        raise NotFoundError(
            f"run {source_run.id} stored no reference images for {', '.join(missing)}; "
            "edit an asset of a run submitted with those characters"
        )
    spec_sha256 = _spec_sha256(edited, references, source_run.options.get("style"))
    storyboard_id = catalog.put_storyboard(edited.name, edited.model_dump(mode="json"), spec_sha256)

    # 3. One frame, keyed by the edit and its source so that two edits never share a key.
    key_material = hashlib.sha256(f"{spec_sha256}\x1f{source.id}".encode()).hexdigest()
    task = FrameTask(
        key=frame_key(key_material, source.scene_id, source.edit_step + 1, source.variant),
        storyboard_id=storyboard_id,
        scene_id=source.scene_id,
        # The runner sends the prompt of a step above 0 as is, without the
        # reference-binding sentence of a first frame.
        edit_step=source.edit_step + 1,
        variant=source.variant,
        parent_key=None,
        prompt=text,
        characters=chosen,
        backend=Backend(source.backend),
        model=source.model,
        width=source.width,
        height=source.height,
        steps=source.steps,
        guidance=source.guidance,
        seed=seed,
    )
    options: dict[str, Any] = {
        "references": references,
        "style": source_run.options.get("style"),
        "spec_sha256": spec_sha256,
        "sources": {task.key: source.id},
        "edit": {"source_asset_id": source.id, "instruction": text},
    }
    run_id = catalog.create_run(storyboard_id, [task], options)
    logger.info("run=%s created to edit asset %s (%d characters)", run_id, source.id, len(chosen))
    return run_id


def _edited_storyboard(
    storyboard: Storyboard, source: AssetRow, instruction: str, characters: list[str], seed: int
) -> Storyboard:
    scene = {
        "id": _scene_id(source.scene_id),
        "prompt": instruction,
        "characters": characters,
        "width": source.width,
        "height": source.height,
        "steps": source.steps,
        "guidance": source.guidance,
        "seed": seed,
    }
    spec = storyboard.model_dump(mode="json")
    spec["scenes"] = [scene]
    if spec.get("matrix") is not None:
        # The edit is one frame, not a combination of axis values.
        spec["matrix"] = None
    try:
        return Storyboard.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if ": " in message and not first["loc"]:
            path, message = message.split(": ", 1)
        else:
            path = field_path(tuple(first["loc"]))
        path = path.replace("scenes[0].characters", "--scene-characters")
        raise SpecError(path, first.get("input"), message) from None


def _scene_id(label: str) -> str:
    """Return a spec scene id for a catalog scene label.

    Matrix frames carry labels such as `ad.us.summer`, which are not valid
    scene ids. The frame keeps the label, and the stored spec gets a slug of it.
    """
    slug = re.sub(r"[^a-z0-9_-]+", "-", label.lower()).strip("-")[:64]
    return slug or "edit"


def _spec_sha256(
    storyboard: Storyboard, references: dict[str, Any], style: dict[str, str] | None
) -> str:
    """Hash the spec and the stored references' digests, as spec loading hashes a spec."""
    digest = hashlib.sha256()
    digest.update(storyboard.model_dump_json().encode())
    for character_id in sorted(references):
        for item in references[character_id]:
            digest.update(f"{character_id}:{item['sha256']}".encode())
    if style:
        digest.update(f"style:{style['sha256']}".encode())
    return digest.hexdigest()
