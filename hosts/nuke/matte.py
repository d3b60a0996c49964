"""The VoidMatte node: a Group with a plate input whose knobs say where the object is; its output is the matte.

The user types (or a script sets) prompts on frames in Nuke's own pixel coordinates (origin at the bottom-left
of the format, y up, as the Viewer's read-out shows them), one per line of the `prompts` knob:

    1001 point 420 300       a click on the object
    1001 negative 40 40      a click off it
    1012 box 380 250 470 360 a box around it (x0 y0 x1 y1)

Submit asks the daemon to track the object through the frames (SAM 2.1 or EdgeTAM with their weights, else the
classical tracker) and, with `affected` text or `propose affected`, to propose what the object affects. The node
then outputs the matte (its internal Read) in rgba, ready for VoidRemove's matte input. The job machinery
(submit, follow, cancel, re-attach) is VoidRemove's: this module only builds the node and its job's spec.
"""

from __future__ import annotations

import os
from typing import Optional

import nuke
from voidlink.bridge.matte import TRACKERS, build_matte_spec
from voidlink.hosts.nuke import node as void_node

from voidlink import errors

NODE_BASE_NAME = "VoidMatte"
KIND_KNOB = "voidlink_kind"
KIND = "matte"
PROMPT_KINDS = {"point": 2, "negative": 2, "box": 4}


def is_matte_node(node) -> bool:
    return void_node.is_void_node(node) and node.knob(KIND_KNOB) is not None and node[KIND_KNOB].value() == KIND


def _add_matte_knobs(group) -> None:
    group.addKnob(nuke.Text_Knob("matte_label", "", "<b>object</b>"))
    prompts = nuke.Multiline_Eval_String_Knob("prompts", "prompts")
    prompts.setTooltip(
        "one per line: FRAME point X Y | FRAME negative X Y | FRAME box X0 Y0 X1 Y1, in the plate's pixels as "
        "the Viewer shows them (origin bottom-left); a prompt on a later frame corrects the matte from there"
    )
    group.addKnob(prompts)
    tracker = nuke.Enumeration_Knob("tracker", "tracker", list(TRACKERS))
    tracker.setTooltip("auto: SAM 2.1 when the daemon has its weights, else the classical tracker (any machine)")
    group.addKnob(tracker)
    affected = nuke.String_Knob("affected_text", "affects")
    affected.setTooltip("what the object affects, e.g. 'its shadow; the reflection': written as a proposal to edit")
    group.addKnob(affected)
    propose = nuke.Boolean_Knob("propose_affected", "propose affected")
    propose.setTooltip("also write an affected proposal (from the object's motion when no text is given)")
    group.addKnob(propose)
    kind = nuke.String_Knob(KIND_KNOB, KIND_KNOB)
    kind.setFlag(nuke.INVISIBLE)
    kind.setValue(KIND)
    group.addKnob(kind)


def _build_internals(group) -> None:
    with group:
        plate = nuke.nodes.Input(name="plate")
        result = nuke.nodes.Read(name="result")
        result["on_error"].setValue("black")
        switch = nuke.nodes.Switch(name="result_switch")
        switch.setInput(0, plate)
        switch.setInput(1, result)
        switch["which"].setValue(0)
        output = nuke.nodes.Output(name="Output1")
        output.setInput(0, switch)


def create_matte_node(selection: Optional[list] = None):
    """A VoidMatte node on the selected plate; None (after telling the user) when nothing is selected."""
    chosen = nuke.selectedNodes() if selection is None else list(selection)
    chosen = [node for node in chosen if not void_node.is_void_node(node)]
    if len(chosen) != 1:
        nuke.message("VOID ▸ Track object: select the plate (one node), then run it again.")
        return None
    (plate,) = chosen
    group = nuke.nodes.Group()
    group.setName(void_node.unique_name(NODE_BASE_NAME))
    group.addKnob(nuke.Tab_Knob("void", "VOID"))
    _add_matte_knobs(group)
    group.addKnob(nuke.Text_Knob("frames_label", "", "<b>frames</b>"))
    void_node.add_frame_knobs(group)
    void_node.add_job_knobs(group)
    group["output"].setTooltip("the matte's EXR sequence (e.g. matte.####.exr); empty: void/<node>/ next to the script")
    _build_internals(group)
    group.setInput(0, plate)
    group["frame_first"].setValue(int(plate.firstFrame()))
    group["frame_last"].setValue(int(plate.lastFrame()))
    group["output"].setValue(void_node.default_output(group))
    for node in nuke.selectedNodes():
        node.setSelected(False)
    group.setSelected(True)
    return group


def parse_prompts(text: str, height: int, where: str) -> dict:
    """The `prompts` knob as `build_matte_spec`'s points, negative and boxes, in the plate's top-left pixels."""
    found: dict = {"points": [], "negative": [], "boxes": []}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        kind = words[1] if len(words) > 1 else ""
        count = PROMPT_KINDS.get(kind)
        try:
            if count is None or len(words) != count + 2:
                raise ValueError
            frame, values = int(words[0]), [float(w) for w in words[2:]]
        except ValueError:
            raise errors.InvalidInput(
                f"{where}: prompts line {number} '{line.strip()}' is not 'FRAME point X Y', 'FRAME negative X Y' "
                "or 'FRAME box X0 Y0 X1 Y1'",
                reason="BAD_VALUE",
                field="prompts",
            ) from None
        if kind == "box":
            x0, y0, x1, y1 = values
            # Nuke counts y up from the bottom; the contract counts it down from the top.
            found["boxes"].append((frame, min(x0, x1), height - max(y0, y1), max(x0, x1), height - min(y0, y1)))
        else:
            x, y = values
            found["points" if kind == "point" else "negative"].append((frame, x, height - y))
    return found


def build_spec(group):
    """(the matte job's spec, [PendingRender] of a plate that is not a plain Read) for the node as it is now."""
    name = group.name()
    if group.input(0) is None:
        raise errors.InvalidInput(f"{name}: no plate: connect the plate to the 'plate' input", reason="NO_SOURCE")
    output = void_node.output_pattern(group)
    render_folder = os.path.join(os.path.dirname(os.path.abspath(output)), f"{name}_inputs")
    clip, pending = void_node.input_clip(group, 0, float(nuke.root()["fps"].value()), render_folder)
    prompts = parse_prompts(group["prompts"].value(), int(group.input(0).format().height()), name)
    frames = (clip.first, clip.last)
    if not group["use_input_range"].value():
        frames = (int(group["frame_first"].value()), int(group["frame_last"].value()))
    script = nuke.root().name()
    labels = {"host": "nuke", "node": name}
    if script and script != "Root":
        labels["script"] = script
    try:
        spec = build_matte_spec(
            clip.path,
            frames,
            text=group["affected_text"].value().strip(),
            propose_affected=bool(group["propose_affected"].value()),
            tracker=group["tracker"].value(),
            output=output,
            name=f"{os.path.basename(script) if labels.get('script') else 'nuke'} {name}",
            labels=labels,
            **prompts,
        )
    except errors.VoidlinkError as error:
        raise type(error)(f"{name}: {error}", reason=error.reason, field=error.field) from None
    return spec, [] if pending is None else [pending], frames
