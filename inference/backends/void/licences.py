"""The licences of the weights VOID runs on, in words an editor picking a backend for paid work can act on.

VOID is two things with two licences: Netflix's VOID checkpoints (Apache-2.0) and the CogVideoX-Fun
base model they sit on (the CogVideoX licence: commercial use needs registration). The terms are
read from the files the download brings (LICENSE, or the model card's `license:` front matter) when
they are in the weights folder, so a folder that carries other terms says so; else the published
terms are stated with a link to read them. Reads only small text files: no torch, no weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from voidlink.inference.backends.void.weights import BASE, BASE_REPO, VOID_REPO

LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING")
MODEL_CARD = "README.md"
_READ_LIMIT = 64 * 1024  # a licence's opening is enough to know it


@dataclass(frozen=True)
class Part:
    """One licensed part of the weights: where its files sit and its published terms."""

    name: str
    folder: str  # relative to the weights folder ("" for the folder itself)
    terms: str
    link: str


PARTS = (
    Part("VOID checkpoints", "", "Apache-2.0", f"https://huggingface.co/{VOID_REPO}"),
    Part(
        "CogVideoX-Fun base model",
        BASE,
        "CogVideoX licence: commercial use needs registration",
        f"https://huggingface.co/{BASE_REPO}/blob/main/LICENSE",
    ),
)


def licences(weights: Path) -> list[str]:
    """One line per part of the VOID weights: its licence and where that was read, or the link to read it."""
    lines = []
    for part in PARTS:
        folder = Path(weights) / part.folder if part.folder else Path(weights)
        found = read_terms(folder)
        if found is None:
            lines.append(f"{part.name}: {part.terms}; no licence file in {folder}, read {part.link}")
        else:
            terms, source = found
            lines.append(f"{part.name}: {terms}; read from {source}")
    return lines


def read_terms(folder: Path) -> Optional[tuple[str, Path]]:
    """(the licence in a few words, the file it came from) from a folder's LICENSE or model card; None
    when neither is there or says nothing recognisable."""
    for name in LICENCE_FILES:
        path = folder / name
        text = _read(path)
        if text is not None and text.strip():
            return _name_licence(text), path
    card = _read(folder / MODEL_CARD)
    if card is not None:
        terms = _card_licence(card)
        if terms:
            return terms, folder / MODEL_CARD
    return None


def _read(path: Path) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(_READ_LIMIT)
    except OSError:
        return None


def _name_licence(text: str) -> str:
    """A licence text's name: the well-known ones by their words, else its first line."""
    lowered = text.lower()
    if "apache license" in lowered and "version 2.0" in lowered:
        return "Apache-2.0"
    if "cogvideox" in lowered:
        commercial = "registration" in lowered or "register" in lowered
        return "CogVideoX licence" + (": commercial use needs registration" if commercial else "")
    if "mit license" in lowered:
        return "MIT"
    if "creative commons" in lowered and "noncommercial" in lowered.replace("-", ""):
        return "a Creative Commons non-commercial licence"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:120]


def _card_licence(card: str) -> str:
    """The `license:` of a model card's YAML front matter (with its `license_name` when it is `other`)."""
    match = re.match(r"\A---\s*\n(.*?)\n---", card, re.S)
    if not match:
        return ""
    fields = dict(re.findall(r"^(license(?:_name|_link)?)\s*:\s*(.+?)\s*$", match.group(1), re.M))
    terms = fields.get("license", "").strip("'\"")
    if terms.lower() == "apache-2.0":
        terms = "Apache-2.0"
    if terms.lower() == "other" and fields.get("license_name"):
        terms = fields["license_name"].strip("'\"")
    if terms and fields.get("license_link"):
        terms += f", {fields['license_link'].strip(chr(39) + chr(34))}"
    return terms
