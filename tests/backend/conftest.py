"""Backend test helpers: device_cases (and the gate tests' gate_cases) on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (str(HERE), str(HERE.parent / "gate")):
    if path not in sys.path:
        sys.path.insert(0, path)
