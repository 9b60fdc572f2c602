"""Shared by every test: nothing here talks to a cluster.

Unit tests (tests/unit) need no cluster; end-to-end tests (tests/e2e) get one
from tests/e2e/conftest.py.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Examples are imported as `examples.*`, from the project root, in tests and in pods alike.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
