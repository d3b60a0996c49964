"""What hosts use: the daemon client, the job spec builders (removal, matte) and the result of a job.

Imports on Python 3.9+ without torch or Qt. `state_name` (a job state's word) is the contract's
(`voidlink.protos.vocabulary`), offered here for hosts' scripts.
"""

from voidlink.bridge.client import Client
from voidlink.bridge.matte import build_matte_spec
from voidlink.bridge.result import RemoveResult
from voidlink.bridge.spec import build_spec
from voidlink.protos.vocabulary import state_name

__all__ = ["Client", "RemoveResult", "build_matte_spec", "build_spec", "state_name"]
