"""The VoidRemove node: a Group with plate / object matte / affected matte inputs and the effect's knobs.

Inside the group a Switch passes the plate through until a job succeeds; then it switches to the
internal Read of the clean plate. The knobs are made from the effect's parameter descriptors
(`voidlink.bridge.effect.PARAMS`), so Nuke shows exactly the parameters every host has.
Everything here runs on Nuke's main thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import nuke
from voidlink.bridge import effect
from voidlink.bridge.effect import ClipInput, RemoveEffect

from voidlink import errors

NODE_BASE_NAME = "VoidRemove"
MARKER_KNOB = "voidlink_node"
INPUTS = (("plate", effect.SOURCE), ("matte", effect.MASK), ("affected", effect.AFFECTED))
PLAIN_READ_SUFFIXES = (".exr", ".dpx", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".mov", ".mp4", ".mxf")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")

SUBMIT_COMMAND = "import voidlink.hosts.nuke as void\nvoid.submit(nuke.thisNode())"
CANCEL_COMMAND = "import voidlink.hosts.nuke as void\nvoid.cancel(nuke.thisNode())"

# Words that make a selected node a matte rather than the plate, and an affected (shadow) matte at that.
_MATTE_WORDS = ("roto", "matte", "mask", "alpha", "shadow", "affect", "reflect")
_AFFECTED_WORDS = ("shadow", "affect", "reflect")
_MATTE_CLASSES = ("Roto", "RotoPaint", "Bezier")
_PLATE_WORDS = ("plate", "bg", "src", "source")


def is_void_node(node) -> bool:
    return node is not None and node.Class() == "Group" and node.knob(MARKER_KNOB) is not None


def is_void_matte(node) -> bool:
    """A VoidMatte node (its kind knob says so): a matte for VoidRemove, not a job to wire around."""
    return is_void_node(node) and node.knob("voidlink_kind") is not None and node["voidlink_kind"].value() == "matte"


def matte_result(node) -> Optional[str]:
    """The matte sequence a VoidMatte node outputs (its internal Read, once a job has written it), else None."""
    if not is_void_matte(node):
        return None
    with node:
        read, switch = nuke.toNode("result"), nuke.toNode("result_switch")
    if read is None or switch is None or switch["which"].value() != 1 or not read["file"].value():
        return None
    return read["file"].value()


def void_nodes() -> list:
    return [node for node in nuke.allNodes("Group", nuke.root(), True) if is_void_node(node)]


def find_by_job(job_id: str) -> list:
    return [node for node in void_nodes() if job_id and node["job_id"].value() == job_id]


def unique_name(base: str) -> str:
    index = 1
    while nuke.toNode(f"{base}{index}") is not None:
        index += 1
    return f"{base}{index}"


def _add_param_knobs(group) -> None:
    group.addKnob(nuke.Text_Knob("params_label", "", "<b>removal</b>"))
    current = "removal"
    for param in effect.PARAMS:
        if param.group != current:
            current = param.group
            group.addKnob(nuke.Text_Knob(f"{current}_label", "", f"<b>{current}</b>"))
            if current == "frames":
                add_frame_knobs(group)
        if param.kind == "choice":
            knob = nuke.Enumeration_Knob(param.name, param.label, list(param.choices))
        elif param.kind == "int":
            knob = nuke.Int_Knob(param.name, param.label)
        elif param.kind == "double":
            knob = nuke.Double_Knob(param.name, param.label)
        elif param.kind == "bool":
            knob = nuke.Boolean_Knob(param.name, param.label)
        elif param.name == "prompt":
            knob = nuke.Multiline_Eval_String_Knob(param.name, param.label)
        else:
            knob = nuke.String_Knob(param.name, param.label)
        knob.setValue(param.default)
        knob.setTooltip(param.hint)
        group.addKnob(knob)


def add_frame_knobs(group) -> None:
    use_input = nuke.Boolean_Knob("use_input_range", "use the plate's frame range")
    use_input.setValue(True)
    use_input.setTooltip("render the plate's whole range; off: render first-last below")
    group.addKnob(use_input)
    group.addKnob(nuke.Int_Knob("frame_first", "first"))
    group.addKnob(nuke.Int_Knob("frame_last", "last"))


def add_job_knobs(group) -> None:
    group.addKnob(nuke.Text_Knob("job_label", "", "<b>job</b>"))
    output = nuke.File_Knob("output", "output")
    output.setTooltip("EXR sequence to write (e.g. clean.####.exr); empty: void/<node>/ next to the script")
    group.addKnob(output)
    address = nuke.String_Knob("address", "daemon address")
    address.setTooltip("empty: $VOIDLINK_ADDRESS, else 127.0.0.1:50151")
    group.addKnob(address)
    group.addKnob(nuke.PyScript_Knob("submit", "Submit", SUBMIT_COMMAND))
    group.addKnob(nuke.PyScript_Knob("cancel", "Cancel", CANCEL_COMMAND))
    group.addKnob(nuke.Text_Knob("status", "status", "not submitted"))
    job_id = nuke.String_Knob("job_id", "job id")
    job_id.setTooltip("the daemon's job; kept with the script so reopening it follows the job again")
    group.addKnob(job_id)
    state = nuke.String_Knob("job_state", "job state")
    state.setFlag(nuke.INVISIBLE)
    group.addKnob(state)
    marker = nuke.String_Knob(MARKER_KNOB, MARKER_KNOB)
    marker.setFlag(nuke.INVISIBLE)
    marker.setValue("1")
    group.addKnob(marker)


def _build_internals(group) -> None:
    with group:
        inputs = [nuke.nodes.Input(name=name) for name, _ in INPUTS]
        result = nuke.nodes.Read(name="result")
        result["on_error"].setValue("black")
        switch = nuke.nodes.Switch(name="result_switch")
        switch.setInput(0, inputs[0])
        switch.setInput(1, result)
        switch["which"].setValue(0)
        output = nuke.nodes.Output(name="Output1")
        output.setInput(0, switch)


def default_output(group) -> str:
    """`void/<node>/<script>_<node>.####.exr` next to the saved script, else ''."""
    script = nuke.root().name()
    if not script or script == "Root":
        return ""
    stem = os.path.splitext(os.path.basename(script))[0]
    name = group.name()
    return os.path.join(os.path.dirname(script), "void", name, f"{stem}_{name}.####.exr")


def _words(node) -> str:
    text = node.name().lower()
    if node.Class() == "Read":
        text += " " + os.path.basename(node["file"].value()).lower()
    return text


def _classify(selection: list) -> tuple:
    """(plate, object matte, affected matte) among the selected nodes; None where there is none.

    Roto nodes, and nodes or files named like mattes (roto, matte, mask, alpha, shadow, ...), are
    mattes, the shadow/affect/reflect ones the affected matte; of the rest, one named like a plate
    is the plate. When nothing looks like a matte, a second selected node is taken as the matte.
    """
    mattes, plates = [], []
    for node in selection:
        words = _words(node)
        is_matte = is_void_matte(node) or node.Class() in _MATTE_CLASSES or any(word in words for word in _MATTE_WORDS)
        (mattes if is_matte else plates).append(node)
    affected = next((n for n in mattes if any(word in _words(n) for word in _AFFECTED_WORDS)), None)
    objects = [n for n in mattes if n is not affected]
    plates.sort(key=lambda n: 0 if any(word in _words(n) for word in _PLATE_WORDS) else 1)
    plate = plates[0] if plates else None
    if not objects and len(plates) > 1:
        objects = plates[1:2]
    return plate, (objects[0] if objects else None), affected


def create_node(selection: Optional[list] = None):
    """A VoidRemove node wired to the selected plate and mattes; None (after telling the user) when it can't be."""
    chosen = nuke.selectedNodes() if selection is None else list(selection)
    chosen = [node for node in chosen if not is_void_node(node) or is_void_matte(node)]
    if not chosen:
        nuke.message(
            "VOID ▸ Remove object: select the plate first (and its object matte, and optionally a shadow or "
            "reflection matte), then run it again."
        )
        return None
    plate, matte, affected = _classify(chosen)
    if plate is None:
        names = ", ".join(node.name() for node in chosen)
        nuke.message(
            f"VOID ▸ Remove object: no plate among the selected nodes ({names} look like mattes). "
            "Select the plate together with its matte."
        )
        return None
    group = nuke.nodes.Group()
    group.setName(unique_name(NODE_BASE_NAME))
    group.addKnob(nuke.Tab_Knob("void", "VOID"))
    _add_param_knobs(group)
    add_job_knobs(group)
    _build_internals(group)
    for index, node in enumerate((plate, matte, affected)):
        if node is not None:
            group.setInput(index, node)
    group["frame_first"].setValue(int(plate.firstFrame()))
    group["frame_last"].setValue(int(plate.lastFrame()))
    group["output"].setValue(default_output(group))
    for node in nuke.selectedNodes():
        node.setSelected(False)
    group.setSelected(True)
    return group


# -- turning the node into an effect ---------------------------------------------------------------


@dataclass
class PendingRender:
    """An input that is not a plain file Read: rendered to EXR through an internal Write before submitting."""

    input_index: int
    label: str
    path: str


def is_plain_read(node) -> bool:
    if node.Class() != "Read" or node["disable"].value():
        return False
    path = node["file"].value()
    return bool(path) and os.path.splitext(path)[1].lower() in PLAIN_READ_SUFFIXES


def output_pattern(group) -> str:
    output = group["output"].value().strip() or default_output(group)
    if not output:
        raise errors.InvalidInput(
            f"{group.name()}: no output: save the script (the default output goes next to it) or set 'output'",
            reason="NO_OUTPUT",
            field="output",
        )
    return output


def upstream_reads(node) -> list:
    """Every Read feeding `node` (itself included): files a job built from it must never write."""
    found, seen, stack = [], set(), [node]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current.Class() == "Read" and current["file"].value():
            found.append(current)
        stack.extend(current.input(i) for i in range(current.inputs()))
    return found


def input_clip(group, index: int, rate: float, render_folder: str) -> tuple:
    name, clip_name = INPUTS[index]
    node = group.input(index)
    if node is None:
        return None, None
    label = f"{node.name()} (input '{name}' of {group.name()})"
    fmt = node.format()
    first, last = int(node.firstFrame()), int(node.lastFrame())
    tracked = matte_result(node)
    if tracked is not None:  # a VoidMatte's own sequence: read as it is, nothing rendered
        path, pending = tracked, None
    elif is_plain_read(node):
        path, pending = node["file"].value(), None
    else:
        path = os.path.join(render_folder, f"{name}.####.exr")
        pending = PendingRender(index, label, path)
    clip = ClipInput(path, first, last, fmt.width(), fmt.height(), rate=rate, label=label)
    return clip, pending


def build_effect(group) -> tuple:
    """(RemoveEffect, [PendingRender]) for the node as it is now; raises InvalidInput naming what is wrong."""
    name = group.name()
    if group.input(0) is None:
        raise errors.InvalidInput(
            f"{name}: no plate: connect the plate to the 'plate' input", reason="NO_SOURCE", field=effect.SOURCE
        )
    if group.input(1) is None:
        raise errors.InvalidInput(
            f"{name}: no object matte: connect a matte (or a Roto) to the 'matte' input",
            reason="NO_MASK",
            field=effect.MASK,
        )
    output = output_pattern(group)
    render_folder = os.path.join(os.path.dirname(os.path.abspath(output)), f"{name}_inputs")
    rate = float(nuke.root()["fps"].value())
    clips, pending = [], []
    for index in range(len(INPUTS)):
        clip, render = input_clip(group, index, rate, render_folder)
        clips.append(clip)
        if render is not None:
            pending.append(render)
    protected = [
        ClipInput(read["file"].value(), int(read["first"].value()), int(read["last"].value()), label=read.name())
        for render in pending
        for read in upstream_reads(group.input(render.input_index))
    ]
    for render in pending:  # rendering an input must not write over a file that feeds it
        for clip in protected:
            frame = clip.first if clip.first is not None else 1
            target = ClipInput(render.path).frame_path(frame)
            if os.path.realpath(target) == os.path.realpath(clip.frame_path(frame)):
                raise errors.PermissionDenied(
                    f"{name}: rendering {render.label} to {render.path} would overwrite {clip.label}'s own files "
                    f"({target}): set 'output' to another folder",
                    reason="OUTPUT_OVERWRITES_SOURCE",
                    field="output",
                    file=target,
                    frame=frame,
                )
    params = {param.name: group[param.name].value() for param in effect.PARAMS}
    frames = None
    if not group["use_input_range"].value():
        frames = (int(group["frame_first"].value()), int(group["frame_last"].value()))
    script = nuke.root().name()
    labels = {"host": "nuke", "node": name}
    if script and script != "Root":
        labels["script"] = script
    remove = RemoveEffect(
        source=clips[0],
        mask=clips[1],
        affected=clips[2],
        output=output,
        frames=frames,
        params=params,
        name=f"{os.path.basename(script) if labels.get('script') else 'nuke'} {name}",
        labels=labels,
        where=name,
        protected=protected,
    )
    return remove, pending


def render_inputs(group, pending: list, first: int, last: int) -> None:
    """Render each pending input over first-last with a temporary internal Write (nuke.execute)."""
    for render in pending:
        with group:
            source = nuke.toNode(INPUTS[render.input_index][0])
            write = nuke.nodes.Write(name=f"render_{INPUTS[render.input_index][0]}")
        try:
            write.setInput(0, source)
            write["file"].setValue(render.path.replace("####", "%04d"))
            write["file_type"].setValue("exr")
            write["channels"].setValue("rgba")
            write["datatype"].setValue("32 bit float")
            write["compression"].setValue("Zip (1 scanline)")
            write["create_directories"].setValue(True)
            nuke.execute(write, first, last, 1)
        except RuntimeError as exc:
            raise errors.InvalidInput(
                f"{group.name()}: rendering {render.label} to {render.path} failed: {exc}",
                reason="INPUT_RENDER_FAILED",
                file=render.path,
            ) from None
        finally:
            nuke.delete(write)


def result_layers(group) -> list[str]:
    """The layers of the clean plate the node outputs (rgba first, then void_delta, void when the job
    wrote layers): the Group passes every channel of its internal Read, so Shuffle sees them all."""
    with group:
        read = nuke.toNode("result")
    layers: list[str] = []
    for channel in read.channels():
        layer = channel.split(".")[0]
        if layer not in layers:
            layers.append(layer)
    return layers


def show_result(group, output_printf: str, first: int, last: int) -> None:
    """Point the internal Read at the clean plate and switch it in."""
    with group:
        read = nuke.toNode("result")
        switch = nuke.toNode("result_switch")
    read["file"].setValue(output_printf)
    for knob in ("first", "origfirst"):
        read[knob].setValue(int(first))
    for knob in ("last", "origlast"):
        read[knob].setValue(int(last))
    read["reload"].execute()
    switch["which"].setValue(1)
