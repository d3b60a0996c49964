"""What `voidlink doctor` says about the VOID weights: each missing file and the commands to fetch them."""

from __future__ import annotations

import json
import subprocess
import sys

from support.tiny_void import write_weights_folder
from voidlink.inference.backends.void import weights


def test_doctor_prints_what_is_missing_and_the_download_commands(tmp_path):
    folder = write_weights_folder(tmp_path / "weights")
    (folder / weights.PASS1).unlink()
    command = [sys.executable, "-m", "voidlink", "doctor", "--weights", str(folder), "--address", "127.0.0.1:9"]
    text = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert f"  - {folder / weights.PASS1} is missing (about 11 GB)" in text.stdout
    assert f"    hf download netflix/void-model void_pass1.safetensors --local-dir '{folder}'" in text.stdout
    report = json.loads(subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120).stdout)
    assert report["void_weights"]["problems"] == [f"{folder / weights.PASS1} is missing (about 11 GB)"]
    assert report["void_weights"]["download_commands"] == weights.download_commands(folder)
    assert not report["backends"]["void"]["available"]
