"""The DaVinci Resolve integration: the Workspace ▸ Scripts menu script and the adapter it runs.

`adapter` (no Qt) reads the current timeline clip and lays the result back over it; `menu` opens
the panel pre-filled and, when the job ends, calls the adapter. The script Resolve lists in its
menu is `scripts/VOID Remove.py` beside this file; `voidlink install resolve` copies it into
Resolve's Scripts folder.
"""

from __future__ import annotations

from pathlib import Path

SCRIPT_DIR = Path(__file__).resolve().parent / "scripts"
SCRIPT_NAME = "VOID Remove.py"
