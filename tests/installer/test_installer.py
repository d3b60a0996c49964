"""`voidlink install/uninstall`: into a temporary home, twice each, leaving no trace; shared helpers."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from support.daemons import tree_digest
from voidlink.installer import common
from voidlink.installer import nuke as nuke_installer

from voidlink import installer
from voidlink.cli import main

FAKES = Path(__file__).resolve().parents[1] / "support" / "fakes"
USER_INIT = "# my studio setup\nimport nuke\nnuke.pluginAddPath('/studio/tools')\n"


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "home"
    (folder / ".nuke").mkdir(parents=True)
    (folder / ".nuke" / "init.py").write_text(USER_INIT)
    (folder / ".nuke" / "menu.py").write_text("# the user's menu\n")
    monkeypatch.setenv("HOME", str(folder))
    return folder


def _run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_install_twice_then_uninstall_twice_leaves_no_trace(home, capsys):
    before = tree_digest(home)
    plugin = home / ".nuke" / "voidlink"

    first = _run(capsys, "install", "nuke", "--user", "--skip-dependencies")
    assert f"voidlink install nuke ({plugin})" in first
    assert "added the voidlink block 'nuke plugin'" in first
    for name in (
        "init.py",
        "menu.py",
        "voidlink_settings.py",
        "lib/voidlink/bridge/client.py",
        "lib/voidlink/hosts/nuke/jobs.py",
        "lib/voidlink/protos/voidlink/v1/voidlink_pb2.py",
    ):
        assert (plugin / name).is_file(), name
    init_text = (home / ".nuke" / "init.py").read_text()
    assert init_text.startswith(USER_INIT)  # the user's own lines are kept byte for byte
    assert f"nuke.pluginAddPath({str(plugin)!r})" in init_text
    after_first = tree_digest(home)

    second = _run(capsys, "install", "nuke", "--skip-dependencies")
    assert "voidlink block 'nuke plugin' unchanged" in second and "wrote" not in second
    assert tree_digest(home) == after_first
    assert init_text.count(">>> voidlink nuke plugin >>>") == 1

    # Nuke starts: ~/.nuke/init.py adds the plugin folder, whose init.py loads the installed client.
    started = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import runpy, sys\n"
                f"sys.path.insert(0, {str(FAKES)!r})\n"
                "import nuke\n"
                "nuke._reset(gui=True)\n"
                f"runpy.run_path({str(home / '.nuke' / 'init.py')!r})  # runs the plugin folder's init.py\n"
                "nuke._run_menus()\n"
                "import os, voidlink.hosts.nuke.startup as startup\n"
                "print(startup.__file__)\n"
                "print(os.environ['VOIDLINK_DAEMON'])\n"
                "print(len(nuke._session.on_script_load))\n"
                "print(nuke.menu('Nuke').findItem('VOID/Remove object') is not None)\n"
            ),
        ],
        capture_output=True,
        text=True,
        cwd=str(home),
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    module_file, daemon_command, callbacks, menu = started.stdout.split("\n")[:4]
    assert module_file.startswith(str(plugin / "lib" / "voidlink"))  # Python wrote __pycache__ in there
    assert daemon_command == f"{sys.executable} -m voidlink" and callbacks == "1" and menu == "True"

    removed = _run(capsys, "uninstall", "nuke")
    assert "removed the voidlink block 'nuke plugin'" in removed
    assert tree_digest(home) == before and not plugin.exists()
    assert sorted(p.name for p in (home / ".nuke").iterdir()) == ["init.py", "menu.py"]
    again = _run(capsys, "uninstall", "nuke", "--user")
    assert "nothing to remove" in again and tree_digest(home) == before


def test_install_into_a_folder_touches_nothing_else_and_says_how_to_load_it(home, tmp_path, capsys):
    before = tree_digest(home)
    (tmp_path / "studio" / "nuke_plugins").mkdir(parents=True)
    studio = tmp_path / "studio" / "nuke_plugins" / "voidlink"
    out = _run(capsys, "install", "nuke", "--path", str(studio), "--skip-dependencies", "--nuke-version", "15")
    assert f"export NUKE_PATH={studio}" in out
    assert "--python-version 3.10" in out and "--python-version 3.9" not in out
    # The printed command pastes into a shell as it is: `>=` in a requirement would otherwise redirect.
    printed = out.split("to add them: ", 1)[1].splitlines()[0]
    expected = nuke_installer.dependency_commands(studio, nuke_installer.python_versions(["15"]))[0]
    assert shlex.split(printed) == expected
    assert tree_digest(home) == before and (studio / "init.py").is_file()
    out = _run(capsys, "uninstall", "nuke", "--path", str(studio))
    assert not studio.exists() and (tmp_path / "studio" / "nuke_plugins").is_dir()  # only what it created goes


def test_dependency_command_targets_each_nuke_python(tmp_path):
    commands = nuke_installer.dependency_commands(tmp_path, nuke_installer.python_versions(["14", "16"]))
    assert len(commands) == 2
    for command, version, folder in ((commands[0], "3.9", "python39"), (commands[1], "3.11", "python311")):
        assert command[:4] == [sys.executable, "-m", "pip", "install"]
        assert command[command.index("--target") + 1] == str(tmp_path / folder)
        assert command[command.index("--python-version") + 1] == version
        assert "--only-binary=:all:" in command and command[command.index("--implementation") + 1] == "cp"
        names = [arg for arg in command if arg.startswith(("grpcio", "protobuf"))]
        assert names == ["grpcio>=1.78", "grpcio-health-checking>=1.78", "protobuf>=6.31.1"]
    with pytest.raises(common.InstallError, match="Nuke 12 is not supported"):
        nuke_installer.python_versions(["12"])


def test_python_version_belongs_to_its_target(home, capsys):
    assert main(["install", "nuke", "--skip-dependencies", "--python-version", "3.10"]) == 2
    assert "--python-version applies to `install resolve` only" in capsys.readouterr().err
    assert main(["install", "resolve", "--path", str(home / "r"), "--skip-dependencies", "--nuke-version", "15"]) == 2
    assert "--nuke-version applies to `install nuke` only" in capsys.readouterr().err
    assert not (home / "r").exists() and not (home / ".nuke" / "voidlink").exists()


def test_a_target_that_does_not_import_is_reported(monkeypatch, capsys):
    monkeypatch.setitem(installer.TARGETS, "resolve", "voidlink.installer.not_there")
    assert main(["install", "resolve"]) == 2
    err = capsys.readouterr().err
    assert "the resolve installer is not available" in err and "not_there" in err


def test_blocks_keep_the_rest_of_the_file_and_uninstall_keeps_changed_files(tmp_path):
    root = tmp_path / "plugin"
    init = tmp_path / "init.py"
    init.write_text("a = 1\nb = 2")  # no final newline
    manifest = common.Manifest.load(root)
    common.make_dirs(root, manifest)
    assert "added" in common.write_block(init, "demo", "x = 1", manifest)
    assert "updated" in common.write_block(init, "demo", "x = 2\n", manifest)
    assert common.read_block(init, "demo") == "x = 2\n"
    common.write_file(root / "kept.txt", "ours", manifest)
    common.write_file(root / "gone.txt", "ours", manifest)
    pip_tree = root / "python310" / "grpc"  # what pip --target writes is recorded after the fact
    pip_tree.mkdir(parents=True)
    (pip_tree / "__init__.py").write_text("")
    common.record_tree(root / "python310", manifest)
    manifest.save()
    (root / "kept.txt").write_text("edited by the user")

    actions = common.uninstall(common.Manifest.load(root))
    assert init.read_text() == "a = 1\nb = 2\n"
    assert any("kept" in a and "kept.txt" in a for a in actions)
    assert sorted(p.name for p in root.iterdir()) == ["kept.txt"]

    init.write_text("# >>> voidlink demo >>>\nx = 1\n")
    with pytest.raises(common.InstallError, match="no end line"):
        common.write_block(init, "demo", "x = 3")


def test_a_failed_dependency_install_is_reported_and_still_uninstalls(home):
    before = tree_digest(home)
    plugin = home / ".nuke" / "voidlink"
    with pytest.raises(common.InstallError) as caught:
        nuke_installer.install(plugin, user=True, nuke_versions=["15"], python=str(home / "no-such-python"))
    assert "cannot run" in str(caught.value) and "voidlink uninstall nuke" in str(caught.value)
    assert (plugin / "init.py").is_file()
    assert "voidlink" not in (home / ".nuke" / "init.py").read_text()  # Nuke was not pointed at it
    nuke_installer.uninstall(plugin)
    assert tree_digest(home) == before and not plugin.exists()


def test_daemon_command_with_spaces_survives_the_round_trip(tmp_path, monkeypatch):
    from voidlink.bridge.client import daemon_command, split_command

    python = tmp_path / "Application Support" / "python3"
    command = [str(python), "-m", "voidlink"]
    line = common.shell_command(command)
    assert split_command(line) == command
    monkeypatch.setenv("VOIDLINK_DAEMON", line)
    assert daemon_command() == command
    # An unquoted path with spaces that names a real program is meant whole.
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert split_command(str(python)) == [str(python)]


def test_the_hosts_libraries_are_installed_once_recorded_and_removed(home, monkeypatch):
    """The pip step of an install, with pip replaced by a stand-in that writes what pip would."""
    ran = []

    def pip(command: list) -> None:
        target = Path(command[command.index("--target") + 1])
        (target / "grpc").mkdir(parents=True, exist_ok=True)
        (target / "grpc" / "__init__.py").write_text("# stand-in\n")
        ran.append(command)

    monkeypatch.setattr(common, "run_command", pip)
    plugin = home / ".nuke" / "voidlink"
    first = nuke_installer.install(plugin, user=False, nuke_versions=["15"])
    assert len(ran) == 1 and "--python-version" in ran[0] and ran[0][ran[0].index("--python-version") + 1] == "3.10"
    assert any(line.startswith("installed ") and "(Nuke 15)" in line for line in first)
    assert (plugin / "python310" / "grpc" / "__init__.py").is_file()
    again = nuke_installer.install(plugin, user=False, nuke_versions=["15"])
    assert len(ran) == 1 and any("already installed" in line for line in again)
    nuke_installer.uninstall(plugin)
    assert not plugin.exists()  # what pip wrote went with the rest
