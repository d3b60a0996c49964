"""A fake `nuke` module: the subset of Foundry's Nuke Python API the voidlink adapter calls.

Names and signatures follow Foundry's reference (nuke.createNode, nuke.nodes.<Class>, knob
classes, nuke.execute, menus, executeInMainThread, ProgressTask, script callbacks). It is strict
where real Nuke is: `node['typo']` raises NameError, an unknown knob in a constructor fails,
Enumeration_Knob refuses values outside its items, knob values are type-checked, and only the main
thread may touch nodes and knobs (workers must marshal through executeInMainThread; tests run that
queue, Nuke's event loop, with `nuke._pump()`). Other underscore names (`_reset`, `_session`) are
test control, not Nuke's API.

`execute` renders for real: Read → (Dot, Grade, Switch, Group/Input/Output) → Write evaluates
the Read's EXR files and writes EXRs. Scripts are saved as JSON under whatever name is given
(the `.nk` syntax itself is not modelled). Roto shapes are not rasterised.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional

import numpy as np

NUKE_VERSION_MAJOR = 15
NUKE_VERSION_MINOR = 1
NUKE_VERSION_STRING = "15.1v3"

# Knob flags (values as in Nuke's headers; only their identity matters here).
DISABLED = 0x80
NO_ANIMATION = 0x100
INVISIBLE = 0x400
STARTLINE = 0x1000
ENDLINE = 0x2000

GUI = False
env: dict = {"gui": False, "NukeVersionMajor": NUKE_VERSION_MAJOR, "NukeVersionString": NUKE_VERSION_STRING}


def _main_only(what: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            f"{what}: the node graph may only be touched from the main thread (use nuke.executeInMainThread)"
        )


# ------------------------------------------------------------------------------------------ test control
# Not Nuke's API (hence the underscores): tests use these to script the user and run the event loop.


class _Session:
    def __init__(self, gui: bool = True) -> None:
        self.gui = gui
        self.messages: list = []
        self.answers: list = []  # what nuke.ask returns, in order
        self.asked: list = []
        self.main_queue: queue.Queue = queue.Queue()
        self.progress_tasks: list = []
        self.on_script_load: list = []
        self.on_script_close: list = []
        self.menus: dict = {}
        self.plugin_paths: list = []
        self.this_node: list = []


_session = _Session(gui=False)  # `import nuke` outside the GUI, as in `nuke -t`; tests _reset()


def _reset(gui: bool = True) -> _Session:
    """A fresh Nuke: empty script, no callbacks, no menus. Returns the session tests script."""
    global _session
    _session = _Session(gui)
    _reset_graph()
    return _session


def _pump(until: Optional[Callable[[], Any]] = None, timeout: float = 30.0) -> None:
    """Run what workers queued with executeInMainThread (Nuke's event loop) until `until()` is true."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("_pump() runs the main-thread queue: call it from the main thread")
    deadline = time.monotonic() + timeout
    while True:
        try:
            call, args, kwargs = _session.main_queue.get(timeout=0.02)
        except queue.Empty:
            if until is None:
                return
        else:
            call(*args, **kwargs)
            continue
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s while pumping the main thread")


# ------------------------------------------------------------------------------------------ knobs


class Knob:
    _type = "Knob"

    def __init__(self, name: str, label: Optional[str] = None) -> None:
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ValueError(f"invalid knob name {name!r}")
        if label is not None and not isinstance(label, str):
            raise TypeError(f"knob {name}: label must be a string, not {type(label).__name__}")
        self._name = name
        self._label = label if label is not None else name
        self._value: Any = self._default()
        self._flags = 0
        self._tooltip = ""
        self._node: Optional[Node] = None

    def _default(self) -> Any:
        return None

    def _convert(self, value: Any) -> Any:
        return value

    def name(self) -> str:
        return self._name

    def label(self) -> str:
        return self._label

    def node(self) -> Optional[Node]:
        return self._node

    def value(self) -> Any:
        _main_only(f"{self._name}.value()")
        return self._value

    def getValue(self) -> Any:
        return self.value()

    def setValue(self, val: Any, chan: int = -1) -> bool:
        _main_only(f"{self._name}.setValue()")
        self._value = self._convert(val)
        return True

    def setFlag(self, flag: int) -> None:
        self._flags |= int(flag)

    def clearFlag(self, flag: int) -> None:
        self._flags &= ~int(flag)

    def getFlag(self, flag: int) -> bool:
        return bool(self._flags & int(flag))

    def setEnabled(self, enabled: bool) -> None:
        _main_only(f"{self._name}.setEnabled()")
        self.clearFlag(DISABLED) if enabled else self.setFlag(DISABLED)

    def enabled(self) -> bool:
        return not self.getFlag(DISABLED)

    def setVisible(self, visible: bool) -> None:
        self.clearFlag(INVISIBLE) if visible else self.setFlag(INVISIBLE)

    def visible(self) -> bool:
        return not self.getFlag(INVISIBLE)

    def setTooltip(self, tooltip: str) -> None:
        self._tooltip = str(tooltip)

    def tooltip(self) -> str:
        return self._tooltip

    def setLabel(self, label: str) -> None:
        self._label = str(label)

    def _saved(self) -> dict:
        return {"type": self._type, "label": self._label, "value": self._value, "flags": self._flags}


def _text(knob: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{knob}: expected a string, got {type(value).__name__}")
    return value


class String_Knob(Knob):
    _type = "String_Knob"

    def __init__(self, name: str, label: Optional[str] = None, text: str = "") -> None:
        super().__init__(name, label)
        self._value = _text(name, text)

    def _default(self) -> str:
        return ""

    def _convert(self, value: Any) -> str:
        return _text(self._name, value)


class EvalString_Knob(String_Knob):
    _type = "EvalString_Knob"

    def evaluate(self) -> str:
        return self.value()


class Multiline_Eval_String_Knob(EvalString_Knob):
    _type = "Multiline_Eval_String_Knob"


class File_Knob(EvalString_Knob):
    _type = "File_Knob"

    def __init__(self, name: str, label: Optional[str] = None) -> None:
        super().__init__(name, label)

    def _default(self) -> str:
        return ""

    def _convert(self, value: Any) -> str:
        return _text(self._name, value)

    def fromUserText(self, text: str) -> None:
        self.setValue(text)


class Int_Knob(Knob):
    _type = "Int_Knob"

    def _default(self) -> int:
        return 0

    def _convert(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{self._name}: expected a number, got {type(value).__name__}")
        return int(value)


class Double_Knob(Knob):
    _type = "Double_Knob"

    def _default(self) -> float:
        return 0.0

    def _convert(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{self._name}: expected a number, got {type(value).__name__}")
        return float(value)


class Color_Knob(Double_Knob):
    _type = "Color_Knob"

    def _default(self) -> float:
        return 1.0


class Boolean_Knob(Knob):
    _type = "Boolean_Knob"

    def __init__(self, name: str, label: Optional[str] = None, value: bool = False) -> None:
        super().__init__(name, label)
        self._value = bool(value)

    def _default(self) -> bool:
        return False

    def _convert(self, value: Any) -> bool:
        if not isinstance(value, (bool, int)):
            raise TypeError(f"{self._name}: expected a bool, got {type(value).__name__}")
        return bool(value)


class Enumeration_Knob(Knob):
    _type = "Enumeration_Knob"

    def __init__(self, name: str, label: str, items: list) -> None:
        super().__init__(name, label)
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise TypeError(f"{name}: items must be a list of strings")
        self._items = list(items)
        self._value = self._items[0] if self._items else ""

    def values(self) -> list:
        return list(self._items)

    def numValues(self) -> int:
        return len(self._items)

    def _convert(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(self._items):
                raise ValueError(f"{self._name}: index {value} out of range")
            return self._items[value]
        if value not in self._items:
            raise ValueError(f"{self._name}: '{value}' is not one of {self._items}")
        return value

    def getValue(self) -> float:  # Nuke: the index, as a float
        return float(self._items.index(self.value()))

    def _saved(self) -> dict:
        return {**super()._saved(), "items": self._items}


class PyScript_Knob(Knob):
    _type = "PyScript_Knob"

    def __init__(self, name: str, label: Optional[str] = None, command: str = "") -> None:
        super().__init__(name, label)
        self._value = _text(name, command)

    def _default(self) -> str:
        return ""

    def _convert(self, value: Any) -> str:
        return _text(self._name, value)

    def execute(self) -> None:
        """Run the command the way a button press does: `nuke.thisNode()` is the knob's node."""
        _main_only(f"{self._name}.execute()")
        _session.this_node.append(self._node)
        try:
            exec(compile(self._value, f"<{self._name} knob>", "exec"), {"nuke": _this_module()})
        finally:
            _session.this_node.pop()

    def _saved(self) -> dict:
        return {**super()._saved()}


class Text_Knob(Knob):
    _type = "Text_Knob"

    def __init__(self, name: str, label: Optional[str] = None, text: str = "") -> None:
        super().__init__(name, label)
        self._value = _text(name, text)

    def _default(self) -> str:
        return ""

    def _convert(self, value: Any) -> str:
        return _text(self._name, value)


class Tab_Knob(Knob):
    _type = "Tab_Knob"

    def __init__(self, name: str, label: Optional[str] = None) -> None:
        super().__init__(name, label)


class Format:
    def __init__(self, width: int, height: int, name: str = "", pixel_aspect: float = 1.0) -> None:
        self._width, self._height, self._name, self._aspect = int(width), int(height), name, pixel_aspect

    def width(self) -> int:
        return self._width

    def height(self) -> int:
        return self._height

    def name(self) -> str:
        return self._name

    def pixelAspect(self) -> float:
        return self._aspect

    def __repr__(self) -> str:
        return f"Format({self._width}x{self._height})"


class Format_Knob(Knob):
    _type = "Format_Knob"

    def _default(self) -> Format:
        return Format(1920, 1080, "HD_1080")

    def _convert(self, value: Any) -> Format:
        if not isinstance(value, Format):
            raise TypeError(f"{self._name}: expected a nuke.Format")
        return value

    def _saved(self) -> dict:
        fmt = self._value
        return {**super()._saved(), "value": [fmt.width(), fmt.height(), fmt.name()]}


_KNOB_TYPES = {
    cls._type: cls
    for cls in (
        String_Knob,
        Multiline_Eval_String_Knob,
        EvalString_Knob,
        File_Knob,
        Int_Knob,
        Double_Knob,
        Color_Knob,
        Boolean_Knob,
        Enumeration_Knob,
        PyScript_Knob,
        Text_Knob,
        Tab_Knob,
        Format_Knob,
    )
}

# ------------------------------------------------------------------------------------------ nodes


class Node:
    _class = "Node"
    _max_inputs = 1

    def __init__(self) -> None:
        self._knobs: OrderedDict = OrderedDict()
        self._user_knobs: list[str] = []
        self._inputs: list = []
        self._parent: Optional[Group] = None
        for knob in self._standard_knobs():
            self._attach(knob)

    def _standard_knobs(self) -> list:
        return [
            String_Knob("name", "name"),
            String_Knob("label", "label"),
            Boolean_Knob("disable", "disable"),
            Boolean_Knob("selected", "selected"),
            Int_Knob("xpos", "xpos"),
            Int_Knob("ypos", "ypos"),
        ]

    def _attach(self, knob: Knob) -> None:
        if knob.name() in self._knobs:
            raise RuntimeError(f"{self._class}: a knob named '{knob.name()}' already exists")
        knob._node = self
        self._knobs[knob.name()] = knob

    # -- identity
    def Class(self) -> str:
        return self._class

    def name(self) -> str:
        _main_only("Node.name()")
        return self._knobs["name"]._value

    def setName(self, name: str) -> None:
        self["name"].setValue(name)

    def fullName(self) -> str:
        parent = self._parent
        if parent is None or isinstance(parent, Root):
            return self.name()
        return f"{parent.fullName()}.{self.name()}"

    def parent(self):
        return self._parent

    # -- knobs
    def __getitem__(self, name: str) -> Knob:
        _main_only(f"node['{name}']")
        try:
            return self._knobs[name]
        except KeyError:
            raise NameError(f"knob {name} does not exist") from None

    def knob(self, p, follow_link: bool = False):
        _main_only(f"node.knob({p!r})")
        if isinstance(p, int):
            return list(self._knobs.values())[p]
        return self._knobs.get(p)

    def knobs(self) -> dict:
        _main_only("node.knobs()")
        return dict(self._knobs)

    def addKnob(self, knob: Knob) -> None:
        _main_only("node.addKnob()")
        if not isinstance(knob, Knob):
            raise TypeError("addKnob takes a nuke.Knob")
        self._attach(knob)
        self._user_knobs.append(knob.name())

    def removeKnob(self, knob: Knob) -> None:
        _main_only("node.removeKnob()")
        if self._knobs.get(knob.name()) is not knob:
            raise ValueError(f"knob {knob.name()} is not on {self.name()}")
        del self._knobs[knob.name()]
        self._user_knobs.remove(knob.name())

    # -- inputs
    def maxInputs(self) -> int:
        return self._max_inputs

    def input(self, index: int):
        _main_only("node.input()")
        return self._inputs[index] if 0 <= index < len(self._inputs) else None

    def inputs(self) -> int:
        """Nuke: the highest connected input + 1."""
        _main_only("node.inputs()")
        connected = [i for i, node in enumerate(self._inputs) if node is not None]
        return connected[-1] + 1 if connected else 0

    def setInput(self, i: int, node) -> bool:
        _main_only("node.setInput()")
        if not isinstance(i, int) or i < 0 or i >= self.maxInputs():
            return False
        if node is not None and not isinstance(node, Node):
            raise TypeError("setInput takes a nuke.Node or None")
        while len(self._inputs) <= i:
            self._inputs.append(None)
        self._inputs[i] = node
        return True

    def dependencies(self) -> list:
        return [node for node in self._inputs if node is not None]

    def setSelected(self, selected: bool) -> None:
        self["selected"].setValue(bool(selected))

    def isSelected(self) -> bool:
        return self["selected"].value()

    def showControlPanel(self) -> None:
        _main_only("node.showControlPanel()")

    # -- image
    def format(self) -> Format:
        upstream = self._upstream()
        return upstream.format() if upstream is not None else root()["format"].value()

    def firstFrame(self) -> int:
        upstream = self._upstream()
        return upstream.firstFrame() if upstream is not None else root()["first_frame"].value()

    def lastFrame(self) -> int:
        upstream = self._upstream()
        return upstream.lastFrame() if upstream is not None else root()["last_frame"].value()

    def frameRange(self):
        return (self.firstFrame(), self.lastFrame())

    def _upstream(self):
        return self.input(0)

    def _image(self, frame: int) -> np.ndarray:
        upstream = self._upstream()
        if upstream is None:
            fmt = self.format()
            return np.zeros((fmt.height(), fmt.width(), 4), np.float32)
        return upstream._pixels(frame)

    def _pixels(self, frame: int) -> np.ndarray:
        if self["disable"].value():
            upstream = self.input(0)
            if upstream is None:
                fmt = self.format()
                return np.zeros((fmt.height(), fmt.width(), 4), np.float32)
            return upstream._pixels(frame)
        return self._image(frame)

    def __repr__(self) -> str:
        return f"<{self._class} {self._knobs['name']._value}>"


class Dot(Node):
    _class = "Dot"


class Grade(Node):
    _class = "Grade"

    def _standard_knobs(self) -> list:
        return super()._standard_knobs() + [Color_Knob("white", "gain"), Color_Knob("multiply", "multiply")]

    def _image(self, frame: int) -> np.ndarray:
        pixels = super()._image(frame).copy()
        pixels[..., :3] *= self["white"].value() * self["multiply"].value()
        return pixels


class Switch(Node):
    _class = "Switch"
    _max_inputs = 16

    def _standard_knobs(self) -> list:
        return super()._standard_knobs() + [Int_Knob("which", "which")]

    def _upstream(self):
        count = len(self._inputs)
        if count == 0:
            return None
        return self.input(max(0, min(self["which"].value(), count - 1)))


class Roto(Node):
    _class = "Roto"

    def _standard_knobs(self) -> list:
        return super()._standard_knobs() + [String_Knob("output", "output", "alpha")]

    def _image(self, frame: int) -> np.ndarray:
        raise RuntimeError(f"{self.name()}: the fake nuke does not rasterise Roto shapes")


class Read(Node):
    _class = "Read"
    _max_inputs = 0

    def _standard_knobs(self) -> list:
        knobs = super()._standard_knobs() + [File_Knob("file", "file")]
        for name in ("first", "last", "origfirst", "origlast"):
            knob = Int_Knob(name, name)
            knob._value = 1
            knobs.append(knob)
        knobs += [
            Format_Knob("format", "format"),
            String_Knob("colorspace", "colorspace", "default"),
            Boolean_Knob("raw", "raw data"),
            Enumeration_Knob("on_error", "missing frames", ["error", "black", "checkerboard", "nearest frame"]),
            Enumeration_Knob("before", "before", ["hold", "loop", "bounce", "black"]),
            Enumeration_Knob("after", "after", ["hold", "loop", "bounce", "black"]),
            PyScript_Knob("reload", "reload", ""),
        ]
        return knobs

    def _frame_file(self, frame: int) -> str:
        return _frame_path(self["file"].value(), frame)

    def channels(self) -> list:
        """Nuke's names for the file's channels: layer.channel, as its EXR reader makes them."""
        path = self._frame_file(self["first"].value())
        if not os.path.isfile(path):
            return []
        import OpenImageIO as oiio

        image = oiio.ImageInput.open(path)
        names = list(image.spec().channelnames)
        image.close()
        return [_nuke_channel(name) for name in names]

    def format(self) -> Format:
        path = self._frame_file(self["first"].value())
        if not os.path.isfile(path):
            return self["format"].value()
        import OpenImageIO as oiio

        image = oiio.ImageInput.open(path)
        if image is None:
            raise RuntimeError(f"{self.name()}: cannot read {path}: {oiio.geterror()}")
        spec = image.spec()
        image.close()
        return Format(spec.full_width, spec.full_height)

    def firstFrame(self) -> int:
        return self["first"].value()

    def lastFrame(self) -> int:
        return self["last"].value()

    def _image(self, frame: int) -> np.ndarray:
        first, last = self["first"].value(), self["last"].value()
        if frame < first or frame > last:
            side = self["before"].value() if frame < first else self["after"].value()
            if side == "black":
                fmt = self.format()
                return np.zeros((fmt.height(), fmt.width(), 4), np.float32)
            frame = min(max(frame, first), last)
        path = self._frame_file(frame)
        if not os.path.isfile(path):
            raise RuntimeError(f"{self.name()}: Read error: {path}: No such file or directory")
        return _read_rgba(path)


class Write(Node):
    _class = "Write"

    def _standard_knobs(self) -> list:
        return super()._standard_knobs() + [
            File_Knob("file", "file"),
            Enumeration_Knob("file_type", "file type", ["", "exr", "dpx", "tiff", "png", "jpeg", "mov"]),
            Enumeration_Knob("datatype", "datatype", ["16 bit half", "32 bit float"]),
            Enumeration_Knob(
                "compression",
                "compression",
                [
                    "none",
                    "Zip (1 scanline)",
                    "Zip (16 scanlines)",
                    "RLE",
                    "PIZ Wavelet (32 scanlines)",
                    "PXR24 (lossy)",
                    "B44 (lossy)",
                    "B44A (lossy)",
                    "DWAA",
                    "DWAB",
                ],
            ),
            Enumeration_Knob("channels", "channels", ["rgb", "rgba", "alpha", "all"]),
            String_Knob("colorspace", "colorspace", "default"),
            Boolean_Knob("raw", "raw data"),
            Boolean_Knob("create_directories", "create directories"),
            Boolean_Knob("use_limit", "limit to range"),
            Int_Knob("first", "first"),
            Int_Knob("last", "last"),
        ]

    def _write(self, frame: int) -> str:
        if self["disable"].value():
            raise RuntimeError(f"{self.name()}: cannot execute a disabled Write")
        pattern = self["file"].value()
        if not pattern:
            raise RuntimeError(f"{self.name()}: no file name given")
        file_type = self["file_type"].value() or os.path.splitext(pattern)[1].lstrip(".").lower()
        if file_type != "exr":
            raise RuntimeError(f"{self.name()}: the fake nuke writes exr only, not '{file_type}'")
        if self.input(0) is None:
            raise RuntimeError(f"{self.name()}: input 0 is not connected")
        path = _frame_path(pattern, frame)
        folder = os.path.dirname(path)
        if folder and not os.path.isdir(folder):
            if not self["create_directories"].value():
                raise RuntimeError(f"{self.name()}: Can't open output file {path}: No such file or directory")
            os.makedirs(folder, exist_ok=True)
        pixels = self.input(0)._pixels(frame)
        channels = self["channels"].value()
        if channels == "rgb":
            data, names = pixels[..., :3], ["R", "G", "B"]
        elif channels == "alpha":
            data, names = pixels[..., 3:4], ["A"]
        else:
            data, names = pixels, ["R", "G", "B", "A"]
        compression = {
            "none": "none",
            "Zip (1 scanline)": "zips",
            "Zip (16 scanlines)": "zip",
            "RLE": "rle",
            "PIZ Wavelet (32 scanlines)": "piz",
            "PXR24 (lossy)": "pxr24",
            "B44 (lossy)": "b44",
            "B44A (lossy)": "b44a",
            "DWAA": "dwaa",
            "DWAB": "dwab",
        }[self["compression"].value()]
        pixel_type = "half" if self["datatype"].value() == "16 bit half" else "float"
        _write_exr(path, data, names, pixel_type, compression)
        return path


class Input(Node):
    _class = "Input"
    _max_inputs = 0

    def _standard_knobs(self) -> list:
        return super()._standard_knobs() + [Int_Knob("number", "number")]

    def _upstream(self):
        group = self._parent
        return group.input(self["number"].value()) if group is not None else None


class Output(Node):
    _class = "Output"


class Group(Node):
    _class = "Group"

    def __init__(self) -> None:
        super().__init__()
        self._children: list[Node] = []

    def maxInputs(self) -> int:
        return len([n for n in self._children if isinstance(n, Input)])

    def begin(self) -> Group:
        _main_only("Group.begin()")
        _context.append(self)
        return self

    def end(self) -> None:
        _main_only("Group.end()")
        if len(_context) < 2 or _context[-1] is not self:
            raise RuntimeError(f"{self.name()}.end() without a matching begin()")
        _context.pop()

    def __enter__(self) -> Group:
        return self.begin()

    def __exit__(self, *exc) -> None:
        self.end()

    def nodes(self) -> list:
        _main_only("Group.nodes()")
        return list(self._children)

    def node(self, s: str):
        _main_only("Group.node()")
        head, _, rest = s.partition(".")
        for child in self._children:
            if child._knobs["name"]._value == head:
                return child.node(rest) if rest and isinstance(child, Group) else (None if rest else child)
        return None

    def _output(self):
        outputs = [n for n in self._children if isinstance(n, Output)]
        return outputs[0] if outputs else None

    def _upstream(self):
        return self._output()


class Root(Group):
    _class = "Root"

    def _standard_knobs(self) -> list:
        fmt = Format_Knob("format", "full size format")
        first = Int_Knob("first_frame", "frame range")
        first._value = 1
        last = Int_Knob("last_frame", "")
        last._value = 100
        fps = Double_Knob("fps", "fps")
        fps._value = 24.0
        return [String_Knob("name", "name", "Root"), first, last, fps, fmt]

    def name(self) -> str:
        return self._knobs["name"]._value

    def fullName(self) -> str:
        return "root"

    def setInput(self, i: int, node) -> bool:
        return False


_CLASSES = {cls._class: cls for cls in (Dot, Grade, Switch, Roto, Read, Write, Input, Output, Group)}

_root = Root()
_context: list = [_root]


def _reset_graph() -> None:
    global _root, _context, GUI
    _root = Root()
    _context[:] = [_root]
    GUI = _session.gui
    env["gui"] = _session.gui


def _this_module():
    return sys.modules[__name__]


def root() -> Root:
    return _root


def thisGroup() -> Group:
    return _context[-1]


def thisNode():
    stack = _session.this_node
    return stack[-1] if stack else _root


def _unique_name(group: Group, base: str) -> str:
    used = {child._knobs["name"]._value for child in group._children}
    index = 1
    while f"{base}{index}" in used:
        index += 1
    return f"{base}{index}"


def _make(node_class: str, knobs: dict) -> Node:
    _main_only(f"creating a {node_class}")
    cls = _CLASSES.get(node_class)
    if cls is None:
        raise RuntimeError(f"{node_class}: unknown command")
    node = cls()
    group = thisGroup()
    node._parent = group
    node._knobs["name"]._value = _unique_name(group, node_class)
    if isinstance(node, Input):
        node._knobs["number"]._value = len([n for n in group._children if isinstance(n, Input)])
    group._children.append(node)
    for name, value in knobs.items():
        if name == "inputs":
            continue
        node[name].setValue(value)  # NameError for a knob this class does not have
    return node


class _NodeConstructors:
    """`nuke.nodes.Read(file=..., first=...)`: create a node (no auto-connection, not selected)."""

    def __getattr__(self, node_class: str) -> Callable:
        if node_class.startswith("_"):
            raise AttributeError(node_class)

        def create(**knobs) -> Node:
            return _make(node_class, knobs)

        create.__name__ = node_class
        return create


nodes = _NodeConstructors()


def createNode(typ: str, knobs: str = "", inpanel: bool = True) -> Node:
    """Create a `typ` node connected below the selected node, as the user's Tab menu does; it becomes the selection."""
    selected = selectedNodes()
    values: dict = {}
    words = knobs.split()
    if len(words) % 2:
        raise RuntimeError(f"createNode: knob arguments '{knobs}' are not name/value pairs")
    for name, value in zip(words[0::2], words[1::2]):
        values[name] = value
    new = _make(typ, values)
    if selected and new.maxInputs() > 0:
        new.setInput(0, selected[0])
    for other in thisGroup()._children:
        other._knobs["selected"]._value = other is new
    return new


def selectedNodes(filter: Optional[str] = None) -> list:  # noqa: A002 - Nuke's own argument name
    _main_only("nuke.selectedNodes()")
    # Nuke lists the most recently selected first; the fake keeps creation order reversed.
    found = [n for n in reversed(thisGroup()._children) if n._knobs["selected"]._value]
    return [n for n in found if filter is None or n.Class() == filter]


def selectedNode() -> Node:
    found = selectedNodes()
    if not found:
        raise ValueError("no node selected")
    return found[0]


def allNodes(filter: Optional[str] = None, group: Optional[Group] = None, recurseGroups: bool = False) -> list:  # noqa: A002
    _main_only("nuke.allNodes()")
    where = group or thisGroup()
    found = []
    for child in where._children:
        if filter is None or child.Class() == filter:
            found.append(child)
        if recurseGroups and isinstance(child, Group):
            found += allNodes(filter, child, True)
    return found


def toNode(s: str):
    _main_only("nuke.toNode()")
    if s == "root":
        return _root
    return thisGroup().node(s)


def delete(n: Optional[Node]) -> None:
    _main_only("nuke.delete()")
    group = n._parent if n is not None else None  # Nuke: passing None does nothing
    if group is not None:
        group._children.remove(n)
        for other in group._children:
            other._inputs = [None if i is n else i for i in other._inputs]


# ------------------------------------------------------------------------------------------ rendering


def execute(
    nameOrNode,
    start: int,
    end: int,
    incr: int = 1,
    views: Optional[list] = None,
    continueOnError: bool = False,
) -> None:
    """Render a Write over start..end (inclusive); the FrameRanges form of the call is not modelled."""
    _main_only("nuke.execute()")
    node = toNode(nameOrNode) if isinstance(nameOrNode, str) else nameOrNode
    if not isinstance(node, Write):
        raise RuntimeError(f"{getattr(node, 'name', lambda: nameOrNode)()} cannot be executed")
    start, end, step = int(start), int(end), int(incr)
    if end < start:
        raise RuntimeError(f"execute: frame range {start}-{end} is empty")
    for frame in range(start, end + 1, step):
        try:
            node._write(frame)
        except RuntimeError:
            if not continueOnError:
                raise


def _frame_path(pattern: str, frame: int) -> str:
    match = re.search(r"%0?(\d*)d", pattern)
    if match:
        width = int(match.group(1) or 0)
        return pattern[: match.start()] + f"{frame:0{width}d}" + pattern[match.end() :]
    hashes = list(re.finditer(r"#+", pattern))
    if hashes:
        m = hashes[-1]
        return pattern[: m.start()] + f"{frame:0{len(m.group(0))}d}" + pattern[m.end() :]
    return pattern


_NUKE_CHANNEL = {"R": "red", "G": "green", "B": "blue", "A": "alpha"}


def _nuke_channel(exr_name: str) -> str:
    # Nuke's reader: the part before the last dot is the layer (further dots become "_"); bare
    # R/G/B/A are rgba; single letters become Nuke's channel words.
    layer, _, channel = exr_name.rpartition(".")
    layer = layer.replace(".", "_") or ("rgba" if channel in _NUKE_CHANNEL else "other")
    return f"{layer}.{_NUKE_CHANNEL.get(channel, channel)}"


def _read_rgba(path: str) -> np.ndarray:
    import OpenImageIO as oiio

    image = oiio.ImageInput.open(path)
    if image is None:
        raise RuntimeError(f"Read error: {path}: {oiio.geterror()}")
    spec = image.spec()
    pixels = np.asarray(image.read_image(oiio.FLOAT), np.float32).reshape(spec.height, spec.width, spec.nchannels)
    names = list(spec.channelnames)
    image.close()
    rgba = np.zeros((spec.height, spec.width, 4), np.float32)
    for index, channel in enumerate(names):
        layer, _, short = channel.rpartition(".")
        if layer not in ("", "rgba", "rgb"):
            continue  # another layer's R (void.delta.R) is not the image's red
        short = short.upper()
        if short in ("R", "G", "B", "A"):
            rgba[..., "RGBA".index(short)] = pixels[..., index]
        elif short == "Y":
            rgba[..., :3] = pixels[..., index : index + 1]
    return rgba


def _write_exr(path: str, pixels: np.ndarray, names: list, pixel_type: str, compression: str) -> None:
    import OpenImageIO as oiio

    pixels = np.ascontiguousarray(pixels, np.float32)
    height, width, channels = pixels.shape
    spec = oiio.ImageSpec(width, height, channels, pixel_type)
    spec.channelnames = tuple(names)
    spec.attribute("compression", compression)
    out = oiio.ImageOutput.create(path)
    if out is None or not out.open(path, spec) or not out.write_image(pixels) or not out.close():
        raise RuntimeError(f"Write error: {path}: {oiio.geterror()}")


# ------------------------------------------------------------------------------------------ UI, threads


def message(prompt: str) -> None:
    _show("nuke.message()", prompt)


def critical(message: str) -> None:  # Nuke's own argument name
    _show("nuke.critical()", message)


def _show(call: str, text: str) -> None:
    _main_only(call)
    _session.messages.append(str(text))


def ask(prompt: str) -> bool:
    _main_only("nuke.ask()")
    _session.asked.append(str(prompt))
    if not _session.answers:
        raise AssertionError(f"nuke.ask() was called but the test scripted no answer: {prompt}")
    return _session.answers.pop(0)


def executeInMainThread(call: Callable, args: tuple = (), kwargs: Optional[dict] = None) -> None:
    """Queue `call` for Nuke's main thread and return at once (as nuke_internal.executeInMain does)."""
    if not callable(call):
        raise TypeError("executeInMainThread: call must be callable")
    if not isinstance(args, tuple):  # Nuke wraps a single argument
        args = (args,)
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError("executeInMainThread: kwargs must be a dict")
    _session.main_queue.put((call, args, dict(kwargs or {})))


def executeInMainThreadWithResult(call: Callable, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
    if not isinstance(args, tuple):
        args = (args,)
    if threading.current_thread() is threading.main_thread():
        return call(*args, **(kwargs or {}))
    done = threading.Event()
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call(*args, **(kwargs or {}))
        finally:
            done.set()

    _session.main_queue.put((run, (), {}))
    done.wait()
    return box.get("value")


class ProgressTask:
    """A progress bar in Nuke's progress window; usable from any thread. It goes away when deleted."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError("ProgressTask takes a title string")
        self.title = name
        self.progress: list[int] = []
        self.messages: list[str] = []
        self._cancelled = False
        _session.progress_tasks.append(self)

    def setProgress(self, i: int) -> None:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"setProgress takes an int, not {type(i).__name__}")
        if not 0 <= i <= 100:
            raise ValueError(f"setProgress({i}): outside 0-100")
        self.progress.append(i)

    def setMessage(self, s: str) -> None:
        if not isinstance(s, str):
            raise TypeError("setMessage takes a string")
        self.messages.append(s)

    def isCancelled(self) -> bool:
        return self._cancelled

    def _user_cancels(self) -> None:  # test control: the user pressed the progress window's cancel
        self._cancelled = True


class MenuItem:
    def __init__(self, name: str, command, shortcut: str, icon: str, tooltip: str) -> None:
        self._name, self._command, self._shortcut, self._icon, self._tooltip = name, command, shortcut, icon, tooltip

    def name(self) -> str:
        return self._name

    def script(self):
        return self._command

    def shortcut(self) -> str:
        return self._shortcut

    def invoke(self) -> None:
        _main_only("MenuItem.invoke()")
        if callable(self._command):
            self._command()
        else:
            exec(compile(self._command, f"<menu {self._name}>", "exec"), {"nuke": _this_module()})


class Menu:
    def __init__(self, name: str) -> None:
        self._name = name
        self._items: list = []

    def name(self) -> str:
        return self._name

    def items(self) -> list:
        return list(self._items)

    def _find(self, name: str):
        for item in self._items:
            if item.name() == name:
                return item
        return None

    def addMenu(self, name: str, icon: str = "", tooltip: str = "", index: int = -1) -> Menu:
        head, _, rest = name.partition("/")
        menu = self._find(head)
        if menu is None:
            menu = Menu(head)
            self._items.insert(len(self._items) if index < 0 else index, menu)
        if not isinstance(menu, Menu):
            raise RuntimeError(f"{head} is a command, not a menu")
        return menu.addMenu(rest, icon) if rest else menu

    def addCommand(
        self,
        name: str,
        command=None,
        shortcut: str = "",
        icon: str = "",
        tooltip: str = "",
        index: int = -1,
        readonly: bool = False,
    ) -> MenuItem:
        if not isinstance(name, str) or not name:
            raise TypeError("addCommand: name must be a non-empty string")
        if command is not None and not (callable(command) or isinstance(command, str)):
            raise TypeError("addCommand: command must be a string or a callable")
        path, _, leaf = name.rpartition("/")
        menu = self.addMenu(path) if path else self
        existing = menu._find(leaf)
        item = MenuItem(leaf, command, shortcut, icon, tooltip)
        if existing is not None:  # Nuke replaces an item of the same name
            menu._items[menu._items.index(existing)] = item
        else:
            menu._items.insert(len(menu._items) if index < 0 else index, item)
        return item

    def findItem(self, name: str):
        head, _, rest = name.partition("/")
        item = self._find(head)
        if rest:
            return item.findItem(rest) if isinstance(item, Menu) else None
        return item

    def removeItem(self, name: str) -> None:
        item = self._find(name)
        if item is not None:
            self._items.remove(item)


_MENU_NAMES = ("Nuke", "Nodes", "Node Graph", "Viewer", "Properties", "Pane", "Animation", "Axis")


def menu(name: str):
    if name not in _MENU_NAMES:
        raise ValueError(f"unknown menu '{name}'")
    if not _session.gui:
        return None
    return _session.menus.setdefault(name, Menu(name))


def toolbar(name: str, create: bool = True):
    return menu(name)


def pluginAddPath(args, addToSysPath: bool = True) -> None:
    """As nuke_internal.overrides.pluginAddPath: paths go to the front (moved there if listed), trailing
    slashes trimmed, sys.path extended; and, as it does when called from an init.py (the only place
    start-up code calls it), each new folder's own init.py runs."""
    paths = list(args) if isinstance(args, (list, tuple)) else [args]
    paths = [re.sub(r"[/\\]+$", "", path) for path in paths if path]
    for path in paths:
        if path in _session.plugin_paths:
            _session.plugin_paths.remove(path)
        _session.plugin_paths.insert(0, path)
        if addToSysPath and path not in sys.path:
            sys.path.insert(0, path)
        init = os.path.join(path, "init.py")
        if os.path.isfile(init):
            _run_startup_file(init)


def _run_startup_file(path: str) -> None:
    with open(path) as stream:
        code = compile(stream.read(), path, "exec")
    exec(code, {"__file__": path, "__name__": "__main__"})


def _run_menus() -> None:
    """What Nuke does once every init.py has run, with a GUI: each plugin folder's menu.py."""
    if _session.gui:
        for path in list(_session.plugin_paths):
            menu_file = os.path.join(path, "menu.py")
            if os.path.isfile(menu_file):
                _run_startup_file(menu_file)


def pluginPath() -> list:
    return list(_session.plugin_paths)


# ------------------------------------------------------------------------------------------ scripts


def _add_callback(where: list, call: Callable, args, kwargs, nodeClass: str) -> None:
    # As nuke_internal.callbacks._addCallback: a callable, args made a tuple, kwargs a dict, listed once.
    if not callable(call):
        raise ValueError("call must be a callable")
    if not isinstance(args, tuple):
        args = (args,)
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, dict):
        raise ValueError("kwargs must be a dictionary")
    entry = (call, args, kwargs, nodeClass)
    if entry in where:
        where.remove(entry)
    where.append(entry)


def _remove_callback(where: list, call: Callable, args, kwargs, nodeClass: str) -> None:
    if not isinstance(args, tuple):
        args = (args,)
    entry = (call, args, {} if kwargs is None else kwargs, nodeClass)
    if entry in where:
        where.remove(entry)


def _run_callbacks(where: list) -> None:
    # Script callbacks run with the root as nuke.thisNode() and only for nodeClass 'Root' or '*'.
    _session.this_node.append(_root)
    try:
        for call, args, kwargs, node_class in list(where):
            if node_class in ("Root", "*"):
                call(*args, **kwargs)
    finally:
        _session.this_node.pop()


def addOnScriptLoad(call: Callable, args=(), kwargs=None, nodeClass: str = "Root") -> None:
    _add_callback(_session.on_script_load, call, args, kwargs, nodeClass)


def addOnScriptClose(call: Callable, args=(), kwargs=None, nodeClass: str = "Root") -> None:
    _add_callback(_session.on_script_close, call, args, kwargs, nodeClass)


def removeOnScriptLoad(call: Callable, args=(), kwargs=None, nodeClass: str = "Root") -> None:
    _remove_callback(_session.on_script_load, call, args, kwargs, nodeClass)


def removeOnScriptClose(call: Callable, args=(), kwargs=None, nodeClass: str = "Root") -> None:
    _remove_callback(_session.on_script_close, call, args, kwargs, nodeClass)


def scriptName() -> str:
    name = _root.name()
    if name == "Root" or not name:
        raise RuntimeError("no script name: the script has not been saved")
    return name


def _save_node(node: Node) -> dict:
    knobs = {}
    for name, knob in node._knobs.items():
        if name in node._user_knobs:
            knobs[name] = {**knob._saved(), "user": True}
        else:
            knobs[name] = {"value": knob._saved()["value"], "flags": knob._flags}
    out = {
        "class": node.Class(),
        "knobs": knobs,
        "user": list(node._user_knobs),
        "inputs": [i._knobs["name"]._value if i is not None else None for i in node._inputs],
    }
    if isinstance(node, Group) and not isinstance(node, Root):
        out["children"] = [_save_node(child) for child in node._children]
    return out


def scriptSave(filename: Optional[str] = None) -> bool:
    _main_only("nuke.scriptSave()")
    path = filename or scriptName()
    _root._knobs["name"]._value = os.path.abspath(path)
    data = {
        "root": {k: _root._knobs[k]._saved()["value"] for k in ("first_frame", "last_frame", "fps")},
        "nodes": [_save_node(child) for child in _root._children],
    }
    with open(path, "w") as stream:
        json.dump(data, stream, indent=1)
    return True


def _load_nodes(group: Group, saved: list) -> None:
    made = {}
    _context.append(group)
    try:
        for entry in saved:
            node = _make(entry["class"], {})
            for name, info in entry["knobs"].items():
                if info.get("user"):
                    kind = _KNOB_TYPES[info["type"]]
                    if kind is Enumeration_Knob:
                        knob = Enumeration_Knob(name, info["label"], info["items"])
                    else:
                        knob = kind(name, info["label"])
                    node.addKnob(knob)
                knob = node._knobs[name]
                value = info["value"]
                if isinstance(knob, Format_Knob):
                    value = Format(value[0], value[1], value[2])
                knob._value = value
                knob._flags = info.get("flags", 0)
            made[node._knobs["name"]._value] = (node, entry)
            if "children" in entry:
                _load_nodes(node, entry["children"])
        for node, entry in made.values():
            for name in entry["inputs"]:
                node._inputs.append(made[name][0] if name is not None else None)
    finally:
        _context.pop()


def scriptOpen(filename: str) -> None:
    _main_only("nuke.scriptOpen()")
    if _root._children:
        raise RuntimeError("the fake nuke opens scripts into an empty session: call scriptClose() first")
    with open(filename) as stream:
        data = json.load(stream)
    _root._knobs["name"]._value = os.path.abspath(filename)
    for key, value in data["root"].items():
        _root._knobs[key]._value = value
    _load_nodes(_root, data["nodes"])
    _run_callbacks(_session.on_script_load)


def scriptClose(ignoreUnsavedChanges: bool = False) -> None:
    _main_only("nuke.scriptClose()")
    _run_callbacks(_session.on_script_close)
    _reset_graph()


def scriptClear() -> None:
    _main_only("nuke.scriptClear()")
    _reset_graph()
