"""The licences of the VOID weights as GetInfo, `voidlink doctor` and the backend state them: read from
the weights folder's LICENSE / model card when present, else the published terms with a link."""

from __future__ import annotations

import json
import subprocess
import sys

from support.tiny_void import write_weights_folder
from voidlink.inference.backends import void_availability
from voidlink.inference.backends.void import weights
from voidlink.inference.backends.void.licences import licences

APACHE = "                                 Apache License\n                           Version 2.0, January 2004\n"
COGVIDEOX_CARD = "---\nlicense: other\nlicense_name: cogvideox-license\nlicense_link: LICENSE\n---\n# CogVideoX-Fun\n"
COGVIDEOX_LICENSE = "The CogVideoX License\n\n... For commercial use, please register through the questionnaire ...\n"


def test_without_files_the_known_terms_with_a_link(tmp_path):
    folder = write_weights_folder(tmp_path / "weights")
    void, base = licences(folder)
    assert void.startswith("VOID checkpoints: Apache-2.0; no licence file in")
    assert void.endswith("read https://huggingface.co/netflix/void-model")
    assert base.startswith("CogVideoX-Fun base model: CogVideoX licence: commercial use needs registration")
    assert "https://huggingface.co/alibaba-pai/CogVideoX-Fun-V1.5-5b-InP/blob/main/LICENSE" in base


def test_read_from_the_licence_and_model_card_files(tmp_path):
    folder = write_weights_folder(tmp_path / "weights")
    (folder / "LICENSE").write_text(APACHE)
    (folder / weights.BASE / "README.md").write_text(COGVIDEOX_CARD)
    void, base = licences(folder)
    assert void == f"VOID checkpoints: Apache-2.0; read from {folder / 'LICENSE'}"
    card = folder / weights.BASE / "README.md"
    assert base == f"CogVideoX-Fun base model: cogvideox-license, LICENSE; read from {card}"
    # The LICENSE file, when there, wins over the card.
    (folder / weights.BASE / "LICENSE").write_text(COGVIDEOX_LICENSE)
    assert licences(folder)[1] == (
        "CogVideoX-Fun base model: CogVideoX licence: commercial use needs registration; "
        f"read from {folder / weights.BASE / 'LICENSE'}"
    )


def test_a_folder_with_other_terms_says_so(tmp_path):
    folder = write_weights_folder(tmp_path / "weights")
    (folder / "LICENSE").write_text("\n  Studio internal licence v3\nAll rights reserved.\n")
    assert licences(folder)[0] == f"VOID checkpoints: Studio internal licence v3; read from {folder / 'LICENSE'}"


def test_availability_states_them_also_when_void_cannot_run(tmp_path):
    folder = tmp_path / "empty"
    state = void_availability(str(folder))
    assert not state.available
    assert [line.split(":")[0] for line in state.licences] == ["VOID checkpoints", "CogVideoX-Fun base model"]


def test_doctor_states_the_licences(tmp_path):
    folder = write_weights_folder(tmp_path / "weights")
    command = [sys.executable, "-m", "voidlink", "doctor", "--weights", str(folder), "--address", "127.0.0.1:9"]
    text = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "  licence: VOID checkpoints: Apache-2.0; no licence file in" in text.stdout
    (folder / "LICENSE").write_text(APACHE)
    report = json.loads(subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120).stdout)
    assert report["backends"]["void"]["licences"][0] == f"VOID checkpoints: Apache-2.0; read from {folder / 'LICENSE'}"
    assert report["backends"]["classical"]["licences"] == []


def test_get_info_states_the_licences(tmp_path, daemon_factory):
    folder = write_weights_folder(tmp_path / "weights")
    (folder / weights.BASE / "LICENSE").write_text(COGVIDEOX_LICENSE)
    client = daemon_factory(VOIDLINK_WEIGHTS=str(folder)).start().client()
    try:
        backends = {b.name: b for b in client.info().backends}
    finally:
        client.close()
    void = list(backends["void"].licences)
    assert void[0].startswith("VOID checkpoints: Apache-2.0; no licence file in")
    assert void[1] == (
        "CogVideoX-Fun base model: CogVideoX licence: commercial use needs registration; "
        f"read from {folder / weights.BASE / 'LICENSE'}"
    )
    assert not backends["classical"].licences
