"""Matte trackers and affected-region proposers, and how the daemon chooses one.

`classical` needs nothing beyond the base install (flow and the camera's motion, on any machine);
`sam2` and `edgetam` need transformers and their weights, downloaded by the user like VOID's.
`auto` takes `sam2` when it can run here, else `classical`. Proposers: `sam3` segments what the
affected text names (with its weights), `motion` proposes whatever changes with the object and
needs nothing; text with no `sam3` falls back to `motion`, and the job's notes say the text was not used.

`TRACKERS` and `PROPOSERS` are the tables, `{name: (factory, availability)}` as the removal backends'
`BACKENDS`: a new tracker is one row, and everything that lists, checks or creates them reads it.
Each model's module is imported only when its row is used, so a build without it lists it as not
installed rather than failing.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable, NamedTuple, Optional, Union

from voidlink.inference.backends.base import Availability
from voidlink.inference.backends.matte.base import AffectedProposer, Tracker

from voidlink.errors import InvalidInput, Unavailable

log = logging.getLogger("voidlink.daemon")

_PACKAGE = "voidlink.inference.backends.matte"
NOT_INSTALLED = "not installed in this build"

Model = Union[Tracker, AffectedProposer]


class MatteEntry(NamedTuple):
    """A row of a table: how to make the tracker or proposer (not yet loaded), and whether it can run here."""

    factory: Callable[[Optional[str]], Model]  # the --weights folder given (or None) -> a tracker or proposer
    availability: Callable[[Optional[str]], Availability]  # the same -> whether and why not


def _module(name: str) -> Any:
    """One of this package's model modules; None when this build does not have it."""
    try:
        return importlib.import_module(f"{_PACKAGE}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{_PACKAGE}.{name}":
            raise  # the module is there and a library it needs is not: its availability says so
        return None


def _always(detail: str) -> Callable[[Optional[str]], Availability]:
    def available(weights: Optional[str] = None) -> Availability:
        return Availability(True, detail=detail)

    return available


def _model_availability(kind: str) -> Callable[[Optional[str]], Availability]:
    """The weights module's `<kind>_availability`, or 'not installed in this build' without that module."""

    def available(weights: Optional[str] = None) -> Availability:
        module = _module("weights")
        if module is None:
            return Availability(False, f"{kind}: {NOT_INSTALLED}")
        return getattr(module, f"{kind}_availability")(weights)

    return available


def _factory(module_name: str, class_name: str, takes_weights: bool) -> Callable[[Optional[str]], Model]:
    def make(weights: Optional[str]) -> Model:
        module = _module(module_name)
        if module is None:
            raise Unavailable(f"{module_name}: {NOT_INSTALLED}", reason="TRACKER_UNAVAILABLE")
        cls = getattr(module, class_name)
        return cls(weights) if takes_weights else cls()

    return make


def _module_availability(module_name: str, detail: str) -> Callable[[Optional[str]], Availability]:
    """Available when this build has the module (it needs nothing else)."""

    def available(weights: Optional[str] = None) -> Availability:
        if importlib.util.find_spec(f"{_PACKAGE}.{module_name}") is None:
            return Availability(False, f"{module_name}: {NOT_INSTALLED}")
        return _always(detail)(weights)

    return available


# The trackers, in the order they are listed (GetInfo, doctor, the choices a refusal names).
TRACKERS: Mapping[str, MatteEntry] = MappingProxyType(
    {
        "classical": MatteEntry(
            _factory("classical", "ClassicalTracker", False),
            _module_availability("classical", "CPU: flow, the camera's motion and GrabCut; no weights"),
        ),
        "sam2": MatteEntry(_factory("sam2", "Sam2Tracker", True), _model_availability("sam2")),
        "edgetam": MatteEntry(_factory("sam2", "EdgeTamTracker", True), _model_availability("edgetam")),
    }
)
# The affected-region proposers: `motion` from what changes near the object, `sam3` from words.
PROPOSERS: Mapping[str, MatteEntry] = MappingProxyType(
    {
        "motion": MatteEntry(
            _factory("motion", "MotionProposer", False),
            _module_availability("motion", "CPU: what changes near the object against its neighbours; no text"),
        ),
        "sam3": MatteEntry(_factory("sam3", "Sam3Proposer", True), _model_availability("sam3")),
    }
)
TRACKER_NAMES = tuple(TRACKERS)
# What `auto` takes: the first of these available here (the last one always is).
AUTO_TRACKERS = ("sam2", "classical")
TEXT_PROPOSER, MOTION_PROPOSER = "sam3", "motion"
TRACKER_FIELD = "spec.matte.tracker"


class Proposal(NamedTuple):
    """The proposer a job runs, and a note for the user when it is not the one the job's words wanted."""

    name: str
    note: str = ""


class MatteRegistry:
    """Creates each tracker and proposer once and keeps it resident between jobs (as `BackendRegistry`)."""

    def __init__(self, weights: Optional[str] = None) -> None:
        self.weights = weights
        self._loaded: dict[tuple[str, str], Model] = {}
        self._availability: dict[tuple[str, str], Availability] = {}
        self._lock = threading.Lock()
        self.load_seconds: dict[str, float] = {}
        self.preload_errors: dict[str, str] = {}

    @staticmethod
    def _table(kind: str) -> Mapping[str, MatteEntry]:
        return TRACKERS if kind == "tracker" else PROPOSERS

    def availability(self, name: str, kind: str = "tracker") -> Availability:
        key = (kind, name)
        if key not in self._availability:
            entry = self._table(kind).get(name)
            if entry is None:
                raise _unknown(name)
            self._availability[key] = entry.availability(self.weights)
        return self._availability[key]

    def resolve(self, requested: str) -> str:
        """The tracker a job asking for `requested` runs; raises naming spec.matte.tracker when it cannot."""
        requested = (requested or "auto").strip().lower()
        if requested == "auto":
            for name in AUTO_TRACKERS[:-1]:
                if name in TRACKERS and self.availability(name).available:
                    return name
            return AUTO_TRACKERS[-1]
        if requested not in TRACKERS:
            raise _unknown(requested)
        state = self.availability(requested)
        if not state.available:
            raise Unavailable(state.reason, reason="TRACKER_UNAVAILABLE", field=TRACKER_FIELD)
        return requested

    def proposer(self, text: str) -> Proposal:
        """The proposer for a job's affected text: `sam3` when there are words and it can run, else `motion`."""
        if not text.strip():
            return Proposal(MOTION_PROPOSER)
        if TEXT_PROPOSER in PROPOSERS and self.availability(TEXT_PROPOSER, "proposer").available:
            return Proposal(TEXT_PROPOSER)
        why = self.availability(TEXT_PROPOSER, "proposer").reason if TEXT_PROPOSER in PROPOSERS else NOT_INSTALLED
        return Proposal(
            MOTION_PROPOSER,
            f"The affected text '{text}' was not used: SAM 3 cannot run here ({why}); the affected region was "
            "proposed from what changes near the object instead.",
        )

    def get(self, name: str, kind: str = "tracker") -> Model:
        """The resident tracker (or proposer) `name`, loaded first if it is not."""
        key = (kind, name)
        with self._lock:
            if key not in self._loaded:
                entry = self._table(kind).get(name)
                if entry is None:
                    raise _unknown(name)
                started = time.perf_counter()
                model = entry.factory(self.weights)
                model.load()
                self._loaded[key] = model  # only a model whose load finished counts as loaded
                self.load_seconds[name] = time.perf_counter() - started
                self.preload_errors.pop(name, None)
            return self._loaded[key]

    def knows(self, name: str) -> bool:
        """Whether `name` is a tracker or a proposer (a --preload name may be one)."""
        return name in TRACKERS or name in PROPOSERS

    def is_loaded(self, name: str, kind: str = "tracker") -> bool:
        return (kind, name) in self._loaded

    def preload(self, name: str) -> threading.Thread:
        """Load tracker or proposer `name` in the background; raises at once when it cannot run here."""
        kind = "tracker" if name in TRACKERS else "proposer"
        state = self.availability(name, kind)  # unknown names raise before any thread starts
        if not state.available:
            raise Unavailable(f"cannot preload: {state.reason}", reason="TRACKER_UNAVAILABLE", field="preload")

        def load() -> None:
            try:
                self.get(name, kind)
                log.info("matte %s %s loaded ahead of the first job in %.1f s", kind, name, self.load_seconds[name])
            except Exception as error:  # the daemon keeps serving; the job that needs it reports the failure
                self.preload_errors[name] = f"{type(error).__name__}: {error}"
                log.exception("preloading matte %s %s failed", kind, name)

        thread = threading.Thread(target=load, name=f"voidlink-preload-{name}", daemon=True)
        thread.start()
        return thread

    def listing(self) -> list[tuple[str, str, Availability, bool]]:
        """(kind, name, availability, loaded) of every tracker, then every proposer (GetInfo's matte_trackers)."""
        rows = []
        for kind, table in (("tracker", TRACKERS), ("proposer", PROPOSERS)):
            for name in table:
                rows.append((kind, name, self.availability(name, kind), self.is_loaded(name, kind)))
        return rows


def _unknown(name: str) -> InvalidInput:
    return InvalidInput(
        f"unknown tracker '{name[:64]}' (choose auto, {', '.join(TRACKERS)})",
        reason="UNKNOWN_TRACKER",
        field=TRACKER_FIELD,
    )
