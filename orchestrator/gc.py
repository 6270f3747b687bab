"""Garbage collection of the object store: objects that no catalog row refers to.

A driver writes each image to the object store before the catalog row that
refers to it, so a driver that dies in between leaves an orphan object,
never a row without its object. `collect_garbage` removes orphans older
than a grace period and the temp files of interrupted local writes.

An object is kept when an asset, an attempt or stored run options refer
to it. Run options are where the reference and style images that `submit`
stores are referenced, for runs and for schedules. An unreferenced object
younger than the grace period is kept too, because its row may still be
on its way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storage.catalog import Catalog
from storage.objects import TEMP_PREFIX, LocalObjectStore, ObjectStore

logger = logging.getLogger(__name__)


@dataclass
class GcReport:
    """The findings and deletions of one garbage collection."""

    dry_run: bool
    grace_s: float
    scanned: int = 0
    # Objects kept because a row refers to them.
    referenced: int = 0
    # Unreferenced objects kept because they are younger than the grace period.
    recent: int = 0
    # Keys removed, or that a dry run would remove.
    removed: list[str] = field(default_factory=list)
    # Keys that rows refer to but the store does not have: lost data to report.
    missing: list[str] = field(default_factory=list)
    # Temp files of interrupted local writes removed (or found, on a dry run).
    temp_files: int = 0


def referenced_keys(catalog: Catalog) -> set[str]:
    """Return every object key that a catalog row or stored run options refer to."""
    return catalog.referenced_object_keys() | catalog.option_object_keys()


def collect_garbage(
    catalog: Catalog,
    store: ObjectStore,
    *,
    grace_s: float,
    dry_run: bool = False,
    now: datetime | None = None,
) -> GcReport:
    """Remove unreferenced objects older than `grace_s` seconds; return what was found.

    The store is listed before the references are read, so an object that a
    driver writes during the sweep is never looked at. The references are
    read a second time just before deleting, so a row committed in between
    still saves its object.

    NOTE: `put` of bytes that are already stored does not refresh the
    object's modification time, so an old orphan that a new attempt
    reproduces (same seed, same bytes) is protected only by that second
    read, not by the grace period.
    """
    if grace_s < 0:
        raise ValueError(f"grace_s must be >= 0, got {grace_s}")
    report = GcReport(dry_run=dry_run, grace_s=grace_s)
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=grace_s)

    # 1. List the store, then read what the catalog refers to.
    listed = dict(store.iter_keys())
    report.scanned = len(listed)
    referenced = referenced_keys(catalog)

    # 2. Sort every object into referenced, recent and garbage.
    candidates = []
    for key, modified in listed.items():
        if key in referenced:
            report.referenced += 1
        elif modified > cutoff:
            report.recent += 1
        else:
            candidates.append(key)

    # 3. Delete the garbage that is still unreferenced now.
    if candidates:
        referenced_now = referenced_keys(catalog)
        for key in candidates:
            if key in referenced_now:
                report.referenced += 1
                continue
            if not dry_run:
                store.delete(key)
            report.removed.append(key)
            logger.debug("gc: %s %s", "would remove" if dry_run else "removed", key)

    # 4. Report rows whose object is gone, checking each again to skip new writes.
    report.missing = sorted(
        key for key in referenced if key not in listed and not store.exists(key)
    )
    for key in report.missing:
        logger.error("gc: object %s is referenced by the catalog but missing from the store", key)

    # 5. Temp files of local writes that were killed between create and rename.
    if isinstance(store, LocalObjectStore):
        report.temp_files = _sweep_temp_files(store, grace_s, dry_run)

    logger.info(
        "gc: %d objects scanned, %d referenced, %d recent, %d %s, %d missing, %d temp files",
        report.scanned,
        report.referenced,
        report.recent,
        len(report.removed),
        "to remove" if dry_run else "removed",
        len(report.missing),
        report.temp_files,
    )
    return report


def _sweep_temp_files(store: LocalObjectStore, grace_s: float, dry_run: bool) -> int:
    if not dry_run:
        return store.sweep_temp_files(min_age_s=grace_s)
    cutoff = datetime.now(UTC).timestamp() - grace_s
    base = store.root / "sha256"
    if not base.is_dir():
        return 0
    count = 0
    for temp in base.glob(f"*/{TEMP_PREFIX}*"):
        try:
            if temp.stat().st_mtime <= cutoff:
                count += 1
        except FileNotFoundError:
            continue
    return count
