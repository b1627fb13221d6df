"""Where the shipped configuration lives: include/configs/ (or `$TUNERFLOW_CONFIG_DIR`) and include/data/.

Stdlib only and importing nothing of ours, so that every conf module, the conf parser included, can find
the catalog, the presets and the example confs without an import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    return Path(os.environ.get("TUNERFLOW_CONFIG_DIR") or REPO_ROOT / "include" / "configs")


def data_dir() -> Path:
    return REPO_ROOT / "include" / "data"
