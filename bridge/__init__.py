"""What hosts use: the daemon client (and, later, the effect model and host adapters).

Imports on Python 3.9+ without torch or Qt.
"""

from voidlink.bridge.client import Client, RemoveResult, build_spec, state_name

__all__ = ["Client", "RemoveResult", "build_spec", "state_name"]
