"""Helpers shared by the schedule tests: UTC times and small copies of the coffee specs."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "coffee"


def utc(text: str) -> datetime:
    """Parse '2025-03-30T01:00' (or with seconds) as a UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def write_spec(folder: Path, name: str = "storyboard-matrix.yaml", **changes: Any) -> Path:
    """Copy the coffee example into `folder` with small frames and top-level `changes`."""
    if not folder.exists():
        shutil.copytree(EXAMPLE, folder)
    doc = yaml.safe_load((EXAMPLE / name).read_text())
    doc["defaults"].update({"width": 16, "height": 16, "steps": 1})
    doc.update(changes)
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    return spec
