from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("CARTRIDGE_SHARED_DIR", REPO_ROOT.parent / "shared"))
PAYLOADS_DIR = SHARED_DIR / "github" / "payloads"
SCHEMAS_DIR = SHARED_DIR / "github" / "schemas"
