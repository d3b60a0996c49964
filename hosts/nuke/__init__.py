"""The Nuke integration: the VoidRemove and VoidMatte nodes, their menus, job watching and batch rendering.

Inside Nuke (GUI or `nuke -t`):

    import voidlink.hosts.nuke as void
    void.create_node()              # from the selection, as the menus do
    void.submit(nuke.toNode("VoidRemove1"))
    void.render("VoidRemove1")      # batch: submit and wait

From a shell, with a Python that can `import nuke`:
`python -m voidlink.hosts.nuke render script.nk VoidRemove1`.

Importing this package does not import `nuke`; the functions load the adapter on first use.
The files Nuke runs at start-up (`init.py`, `menu.py`) are in the `plugin` folder beside this file.
"""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"

_EXPORTS = {
    "create_node": "voidlink.hosts.nuke.node",
    "create_matte_node": "voidlink.hosts.nuke.matte",
    "is_void_node": "voidlink.hosts.nuke.node",
    "void_nodes": "voidlink.hosts.nuke.node",
    "submit": "voidlink.hosts.nuke.jobs",
    "cancel": "voidlink.hosts.nuke.jobs",
    "render": "voidlink.hosts.nuke.jobs",
    "reattach_all": "voidlink.hosts.nuke.jobs",
    "detach_all": "voidlink.hosts.nuke.jobs",
    "add_menus": "voidlink.hosts.nuke.startup",
    "install_callbacks": "voidlink.hosts.nuke.startup",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["PLUGIN_DIR", *_EXPORTS]
