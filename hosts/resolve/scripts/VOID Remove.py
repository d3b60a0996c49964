"""DaVinci Resolve ▸ Workspace ▸ Scripts ▸ VOID Remove.

Removes an object (and its shadow or reflection) from the clip under the playhead: opens the VOID
panel with the clip's media and source range, and lays the clean plate on the track above it,
frame for frame, when the job ends. Installed by `voidlink install resolve`.
"""

import os
import sys

# >>> voidlink paths >>>
VOIDLINK_PATHS = []
# <<< voidlink paths <<<

for _path in VOIDLINK_PATHS + [p for p in os.environ.get("VOIDLINK_PYTHONPATH", "").split(os.pathsep) if p]:
    if _path not in sys.path:
        sys.path.insert(0, _path)

from voidlink.hosts.resolve import menu  # noqa: E402 (after the paths above)

if __name__ == "__main__" or "resolve" in globals():
    menu.main(globals())
