"""What the plugin's init.py and menu.py call: script callbacks (every mode) and menus (GUI only)."""

from __future__ import annotations

import nuke
from voidlink.hosts.nuke import jobs
from voidlink.hosts.nuke import matte as matte_node
from voidlink.hosts.nuke import node as void_node

MENU_NAME = "VOID"
REMOVE_LABEL = "Remove object"
MATTE_LABEL = "Track object (matte)"


def _on_script_load() -> None:
    if nuke.env.get("gui"):  # batch renders follow their own job; only the GUI watches in the background
        jobs.reattach_all()


def _on_script_close() -> None:
    jobs.detach_all()


def install_callbacks() -> None:
    """Re-attach to running jobs when a script opens; stop following (not cancel) when it closes."""
    nuke.addOnScriptLoad(_on_script_load)
    nuke.addOnScriptClose(_on_script_close)


def _submit_selected() -> None:
    chosen = [node for node in nuke.selectedNodes() if void_node.is_void_node(node)]
    if not chosen:
        nuke.message("VOID ▸ Submit: select a VoidRemove or VoidMatte node first.")
    for group in chosen:
        jobs.submit(group)


def _cancel_selected() -> None:
    chosen = [node for node in nuke.selectedNodes() if void_node.is_void_node(node)]
    if not chosen:
        nuke.message("VOID ▸ Cancel: select a VoidRemove or VoidMatte node first.")
    for group in chosen:
        jobs.cancel(group)


def add_menus() -> None:
    """Nuke ▸ VOID, the Nodes toolbar's VOID entry and the Node Graph's right-click VOID menu."""
    main = nuke.menu("Nuke").addMenu(MENU_NAME)
    main.addCommand(REMOVE_LABEL, void_node.create_node, tooltip="a VoidRemove node for the selected plate and matte")
    main.addCommand(MATTE_LABEL, matte_node.create_matte_node, tooltip="a VoidMatte node on the selected plate")
    main.addCommand("Submit selected", _submit_selected)
    main.addCommand("Cancel selected", _cancel_selected)
    toolbar = nuke.menu("Nodes").addMenu(MENU_NAME)
    toolbar.addCommand("VoidRemove", void_node.create_node, tooltip="remove an object and its effects (VOID)")
    toolbar.addCommand("VoidMatte", matte_node.create_matte_node, tooltip="track an object from clicks into a matte")
    graph = nuke.menu("Node Graph").addMenu(MENU_NAME)
    graph.addCommand(REMOVE_LABEL, void_node.create_node)
    graph.addCommand(MATTE_LABEL, matte_node.create_matte_node)
    graph.addCommand("Submit selected", _submit_selected)
