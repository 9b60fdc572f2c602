#!/usr/bin/env python3
"""Refresh the chart's CRDs from the repository's single source.

The top-level `crds/` folder is the one place a CRD is edited. The chart
carries a byte-for-byte copy in `charts/kinflow/crds/` (a copy, not a symlink:
Helm warns on every command about symlinks that leave the chart, and a chart
published from a plain checkout must stand alone). `tests/unit/chart` fails
when the two differ; this script makes them equal again:

    python3 charts/sync_crds.py          # copy, and delete stale copies
    python3 charts/sync_crds.py --check  # exit 1 and list differences
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "crds"
CHART_CRDS = ROOT / "charts" / "kinflow" / "crds"


def differences(source: Path = SOURCE, copy: Path = CHART_CRDS) -> list[str]:
    """What differs between the source CRDs and the chart's copy, one line each."""
    src = {p.name: p.read_bytes() for p in sorted(source.glob("*.yaml"))}
    dst = {p.name: p.read_bytes() for p in sorted(copy.glob("*.yaml"))} if copy.is_dir() else {}
    out = []
    for name in sorted(src.keys() | dst.keys()):
        if name not in dst:
            out.append(f"missing in chart: {name}")
        elif name not in src:
            out.append(f"stale in chart (no source in crds/): {name}")
        elif src[name] != dst[name]:
            out.append(f"differs: {name}")
    return out


def sync(source: Path = SOURCE, copy: Path = CHART_CRDS) -> list[str]:
    """Make the chart's copy equal to the source; return what changed."""
    changed = differences(source, copy)
    copy.mkdir(parents=True, exist_ok=True)
    for stale in copy.glob("*.yaml"):
        if not (source / stale.name).exists():
            stale.unlink()
    for path in source.glob("*.yaml"):
        shutil.copyfile(path, copy / path.name)
    return changed


def main(argv: list[str]) -> int:
    if "--check" in argv:
        diff = differences()
        for line in diff:
            print(line)
        return 1 if diff else 0
    for line in sync():
        print(f"synced: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
