"""Run one `tick` in its own process when released; print its outcomes as JSON.

Usage: python tick_worker.py CATALOG_URL NOW_ISO BARRIER_FOLDER

The worker imports everything, writes `ready-<pid>` into the folder and
waits for a `go` file there, so that the ticks of several workers overlap.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from orchestrator.scheduler import tick
from storage.catalog import Catalog


def main() -> None:
    url, now, barrier = sys.argv[1], datetime.fromisoformat(sys.argv[2]), Path(sys.argv[3])
    catalog = Catalog(url)
    (barrier / f"ready-{os.getpid()}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.001)
    outcomes = tick(catalog, now=now)
    rows = [[o.schedule_id, o.fire_time.isoformat(), o.status.value, o.run_id] for o in outcomes]
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
