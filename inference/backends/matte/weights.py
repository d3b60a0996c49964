"""Where the matte models' weights live, whether they are whole, and how to fetch them.

Each model is a Hugging Face folder in the transformers layout under the weights folder (the one
VOID uses: `--weights DIR`, `$VOIDLINK_WEIGHTS`, or the platform data dir):

    sam2.1-hiera-large/ | sam2.1-hiera-base-plus/ | sam2.1-hiera-small/ | sam2.1-hiera-tiny/
                        config.json, model.safetensors (or a sharded index and its shards)
    EdgeTAM-hf/         config.json, model.safetensors
    sam3/               config.json, model.safetensors, tokenizer.json (or vocab.json + merges.txt)

The checks read file headers only: no torch, no transformers (the daemon lists availability
before either is imported).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from voidlink.inference.backends.base import Availability
from voidlink.inference.backends.void.licences import read_terms
from voidlink.inference.backends.void.weights import check_safetensors

__all__ = [
    "EDGETAM",
    "SAM2_MODELS",
    "SAM3",
    "ModelFiles",
    "ModelReport",
    "check_model",
    "download_commands",
    "edgetam_availability",
    "find_sam2",
    "incomplete",
    "licence_line",
    "sam2_availability",
    "sam3_availability",
    "weight_files",
]

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class ModelFiles:
    """One model's folder, where it comes from, and what it needs besides its weights."""

    kind: str  # "sam2", "edgetam", "sam3"
    label: str  # in words, for messages
    folder: str  # relative to the weights folder
    repo: str  # Hugging Face repository id
    size: str  # published size, for the message about a folder that is not there
    terms: str  # published licence
    link: str
    transformers_model: str  # the folder under transformers/models that holds its classes
    libraries: tuple[str, ...] = ()  # Python modules it needs besides torch and transformers
    # Other files it needs: each entry is a set of alternatives (any one of them is enough).
    extra: tuple[tuple[str, ...], ...] = ()
    gated: bool = False  # the repository asks users to accept its terms before downloading


def _sam2(size: str, approximate: str) -> ModelFiles:
    return ModelFiles(
        kind="sam2",
        label=f"SAM 2.1 hiera-{size}",
        folder=f"sam2.1-hiera-{size}",
        repo=f"facebook/sam2.1-hiera-{size}",
        size=approximate,
        terms="Apache-2.0",
        link=f"https://huggingface.co/facebook/sam2.1-hiera-{size}",
        transformers_model="sam2_video",
    )


# In the order they are preferred when several are there; `small` is the one the commands fetch.
SAM2_MODELS: tuple[ModelFiles, ...] = (
    _sam2("large", "about 900 MB"),
    _sam2("base-plus", "about 320 MB"),
    _sam2("small", "about 185 MB"),
    _sam2("tiny", "about 155 MB"),
)
SAM2_DEFAULT = SAM2_MODELS[2]
EDGETAM = ModelFiles(
    kind="edgetam",
    label="EdgeTAM",
    folder="EdgeTAM-hf",
    repo="yonigozlan/EdgeTAM-hf",
    size="about 60 MB",
    terms="Apache-2.0",
    link="https://github.com/facebookresearch/EdgeTAM/blob/main/LICENSE",
    transformers_model="edgetam_video",
    libraries=("timm",),  # its RepViT image encoder is a timm model
)
SAM3 = ModelFiles(
    kind="sam3",
    label="SAM 3",
    folder="sam3",
    repo="facebook/sam3",
    size="about 3.5 GB",
    terms="SAM License (Meta): commercial and research use permitted, derivatives carry the licence",
    link="https://huggingface.co/facebook/sam3/blob/main/LICENSE",
    transformers_model="sam3",
    extra=(("tokenizer.json", "vocab.json"),),
    gated=True,
)


@dataclass
class ModelReport:
    model: ModelFiles
    folder: Path
    problems: list[str] = field(default_factory=list)  # each names a file or folder and what is wrong

    @property
    def ok(self) -> bool:
        return not self.problems


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files a model folder's weights are in: the single file, or the index's shards."""
    folder = Path(folder)
    index = folder / INDEX
    if not (folder / SINGLE).is_file() and index.is_file():
        try:
            weight_map = json.loads(index.read_text()).get("weight_map", {})
        except (OSError, ValueError):
            return []
        return [folder / name for name in sorted(set(weight_map.values()))]
    return [folder / SINGLE]


def check_model(weights: Path, model: ModelFiles) -> ModelReport:
    """Everything missing or broken in one model's folder, without loading anything."""
    folder = Path(weights) / model.folder
    report = ModelReport(model, folder)
    if not folder.is_dir():
        report.problems.append(f"{folder} is missing ({model.label} weights, {model.size})")
        return report
    if not (folder / CONFIG).is_file():
        report.problems.append(f"{folder / CONFIG} is missing")
    index = folder / INDEX
    if not (folder / SINGLE).is_file() and index.is_file():
        try:
            json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            report.problems.append(f"{index} is unreadable ({error}); download it again")
            return report
    for path in weight_files(folder):
        problem = check_safetensors(path)
        if problem:
            report.problems.append(problem if path.is_file() else f"{path} is missing ({model.size})")
    for alternatives in model.extra:
        if not any((folder / name).is_file() for name in alternatives):
            report.problems.append(f"{folder / alternatives[0]} is missing")
    return report


def find_sam2(weights: Path) -> ModelReport:
    """The SAM 2.1 folder to use: the largest whole one, else the report on the default (small)."""
    reports = [check_model(weights, model) for model in SAM2_MODELS]
    whole = next((report for report in reports if report.ok), None)
    if whole is not None:
        return whole
    # A folder that is there but broken says more than the default that is not there at all.
    present = next((report for report in reports if report.folder.is_dir()), None)
    return present or reports[SAM2_MODELS.index(SAM2_DEFAULT)]


def incomplete(weights: Path) -> tuple[str, ...]:
    """The kinds ("sam2", "edgetam", "sam3") whose weights are not whole in `weights`."""
    reports = {"sam2": find_sam2(weights), "edgetam": check_model(weights, EDGETAM), "sam3": check_model(weights, SAM3)}
    return tuple(kind for kind, report in reports.items() if not report.ok)


def download_commands(weights: Path, kinds: tuple[str, ...] = ("sam2", "edgetam", "sam3")) -> list[str]:
    """What a user runs on a machine with internet to fetch the matte models into `weights`."""
    weights = Path(weights)
    models = {"sam2": SAM2_DEFAULT, "edgetam": EDGETAM, "sam3": SAM3}
    commands = ["pip install -U 'huggingface_hub[cli]'"]
    for kind in kinds:
        model = models[kind]
        if model.gated:
            # Accepting the terms on the model's page comes first; the login carries the acceptance.
            commands.append("hf auth login")
        commands.append(f"hf download {model.repo} --local-dir '{weights / model.folder}'")
    return commands


def licence_line(weights: Path, model: ModelFiles) -> str:
    """The model's licence, as its folder states it (LICENSE or model card), else its published terms."""
    folder = Path(weights) / model.folder
    found = read_terms(folder)
    if found is None:
        return f"{model.label} weights: {model.terms}; no licence file in {folder}, read {model.link}"
    terms, source = found
    return f"{model.label} weights: {terms}; read from {source}"


def _missing_libraries(model: ModelFiles) -> list[str]:
    """What the model needs of the Python libraries and is not here, one sentence each (none imported)."""
    absent = [name for name in ("torch", "transformers", *model.libraries) if importlib.util.find_spec(name) is None]
    missing = []
    if absent:
        extra = "edgetam" if "timm" in model.libraries else "matte"
        missing.append(f"{', '.join(absent)} not installed (pip install 'voidlink[{extra}]')")
    if "transformers" not in absent:
        spec = importlib.util.find_spec("transformers")
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not any((Path(place) / "models" / model.transformers_model).is_dir() for place in locations):
            version = importlib.metadata.version("transformers")
            missing.append(
                f"transformers {version} has no {model.transformers_model} "
                "(pip install -U 'voidlink[matte]': transformers 5 or later)"
            )
    return missing


def _availability(weights: Optional[str], report: ModelReport) -> Availability:
    from voidlink.inference.backends import weights_dir

    model = report.model
    folder = weights_dir(weights)
    reasons = []
    reasons.extend(_missing_libraries(model))
    if not report.ok:
        reasons.append(f"weights incomplete in {folder}: " + "; ".join(report.problems))
    licences = [licence_line(folder, model)]
    if reasons:
        fetch = ""
        if not report.ok:
            fetch = "on a machine with internet, run: " + " && ".join(download_commands(folder, (model.kind,)))
            if model.gated:
                fetch = f"accept the terms on https://huggingface.co/{model.repo} first; " + fetch
        return Availability(False, f"{model.kind}: " + "; ".join(reasons), detail=fetch, licences=licences)
    return Availability(
        True, detail=f"{model.label} in {report.folder} (CUDA when there is one, else CPU, slowly)", licences=licences
    )


def sam2_availability(weights: Optional[str] = None) -> Availability:
    """Whether the SAM 2.1 tracker can run here; when not, every reason (libraries, each missing file)."""
    from voidlink.inference.backends import weights_dir

    return _availability(weights, find_sam2(weights_dir(weights)))


def edgetam_availability(weights: Optional[str] = None) -> Availability:
    """Whether the EdgeTAM tracker can run here (SAM 2's interface, a small image encoder from timm)."""
    from voidlink.inference.backends import weights_dir

    return _availability(weights, check_model(weights_dir(weights), EDGETAM))


def sam3_availability(weights: Optional[str] = None) -> Availability:
    """Whether the SAM 3 text-prompted affected-region proposer can run here."""
    from voidlink.inference.backends import weights_dir

    return _availability(weights, check_model(weights_dir(weights), SAM3))
