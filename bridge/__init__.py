"""What hosts use: the daemon client, the job spec builder and the result of a removal.

Imports on Python 3.9+ without torch or Qt. `state_name` (a job state's word) is the contract's
(`voidlink.protos.vocabulary`), offered here for hosts' scripts.
"""

from voidlink.bridge.client import Client
from voidlink.bridge.result import RemoveResult
from voidlink.bridge.spec import build_spec
from voidlink.protos.vocabulary import state_name

__all__ = ["Client", "RemoveResult", "build_spec", "state_name"]
