"""Where kinflow keeps local state. Tiny on purpose: the CLI imports it without the rest."""

import os
from pathlib import Path


def data_dir() -> Path:
    """$XDG_DATA_HOME/kinflow, else ~/.local/share/kinflow: the dev and test clusters live here."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kinflow"
