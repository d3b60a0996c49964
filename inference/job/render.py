"""The render: the job's plates fed to the backend, and each frame it returns composited over the
original and written into the staging folder.

    read (OpenImageIO) → colour to model space (OCIO) → quadmask → crop/scale plan → backend →
    scale/paste back → colour back → composite over the original → write (temp file, rename)

A bounded read-ahead feeds the backend, which holds its own sliding window; each result is written
as it comes. Pixels outside the dilated, feathered mask come out bit-identical to the plate.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Callable

import numpy as np
from voidlink.inference.backends.base import Backend, BackendFrame, BackendRequest, BackendResult
from voidlink.inference.job.analyse import Analysis
from voidlink.inference.job.control import ProgressSink, check_cancelled
from voidlink.inference.job.describe import provenance
from voidlink.inference.job.mattes import frame_quadmask
from voidlink.inference.job.prepare import PreparedJob
from voidlink.inference.job.staging import is_output_staged, staged_path, write_counts
from voidlink.media import colour, composite, image, quadmask, sequence
from voidlink.media.plan import ProcessingPlan
from voidlink.media.readahead import read_ahead

from voidlink.errors import InvalidInput, VoidlinkError

Loaded = tuple[int, image.ImageFrame, np.ndarray]  # (frame, its plate, its quadmask before feathering)


def render(
    prepared: PreparedJob,
    backend: Backend,
    request: BackendRequest,
    analysis: Analysis,
    staging: Path,
    progress: ProgressSink,
    cancelled: Callable[[], bool],
    frames: list[int],
    done_elsewhere: Collection[int],
    job_id: str,
) -> tuple[dict[str, float], list[str]]:
    """Render `frames` of the job into `staging`, skipping those staged already or `done_elsewhere`;
    returns the run's metrics and notes. Raises VoidlinkError (INCOMPLETE) when the backend stops early."""
    total = len(frames)
    todo = _unrendered(prepared, staging, frames, done_elsewhere)
    done = total - len(todo)
    if done:
        progress.log(f"resuming: {done} of {total} frames were already rendered")
    metrics = _metrics(total, analysis)
    if not todo:
        return metrics, []
    work = analysis.plan
    transform = colour.ModelTransform(prepared.source_colorspace)
    plates = _Plates(prepared, work, transform, cancelled)
    writer = _StagedWriter(prepared, work, transform, staging, job_id, provenance(prepared, backend, request, job_id))
    region = "the whole frame" if work.full_frame else f"a {work.crop_size[0]}x{work.crop_size[1]} region"
    progress.stage("render", f"{backend.name}: {len(todo)} frames, {region} at {work.size[0]}x{work.size[1]}")
    wanted = set(todo)
    nonfinite: list[int] = []
    for result in backend.run(plates.feed(_fed_frames(prepared, backend, todo, frames)), request):
        writer.made_by.update(request.provenance)  # the backend's own, known once it has run
        bad = plates.returned(result.index, backend.name)
        if result.index not in wanted:
            continue  # a frame of the context fed around the frames to render
        check_cancelled(cancelled)
        if bad:
            nonfinite.append(result.index)
        writer.write(plates.load(result.index), result)
        if result.counts:
            write_counts(staging, result.index, result.counts)
        done += 1
        progress.frame_written(result.index, done, total, _preview_pixels(result.image))
    missing = _unrendered(prepared, staging, frames, done_elsewhere)
    if missing:
        raise VoidlinkError(
            f"backend {backend.name} stopped before frames {sequence.format_frames(missing)}",
            reason="INCOMPLETE",
            frames=missing,
        )
    metrics["nonfinite_frames"] = float(len(nonfinite))
    return metrics, _notes(nonfinite, analysis, progress)


def _unrendered(prepared: PreparedJob, staging: Path, frames: list[int], done_elsewhere: Collection[int]) -> list[int]:
    """The frames neither staged (a frame is done once its output is) nor rendered elsewhere."""
    return [f for f in frames if f not in done_elsewhere and not is_output_staged(prepared, staging, f)]


def _metrics(total: int, analysis: Analysis) -> dict[str, float]:
    work = analysis.plan
    return {
        "frames": float(total),
        "mask_coverage": analysis.coverage,
        "snapped_pixels": float(analysis.snapped),
        "scale": float(work.scale),
        "crop_width": float(work.crop_size[0]),
        "crop_height": float(work.crop_size[1]),
    }


def _fed_frames(prepared: PreparedJob, backend: Backend, todo: list[int], frames: list[int]) -> range:
    """The frames fed to the backend: those to render and the `temporal_context` it needs around them."""
    start = max(prepared.first, todo[0] - backend.temporal_context)
    # A segment's last frames need the frames after them as an uninterrupted run has them.
    end = prepared.last if frames[-1] == prepared.last else min(prepared.last, frames[-1] + backend.temporal_context)
    return range(start, end + 1)


def _notes(nonfinite: list[int], analysis: Analysis, progress: ProgressSink) -> list[str]:
    notes = []
    if nonfinite:
        notes.append(
            f"Frames {sequence.format_frames(nonfinite)} have NaN or infinite pixels; inside the mask they were "
            "treated as black for the fill, outside it they are left exactly as they were."
        )
        progress.log(notes[-1])
    if analysis.empty:
        notes.append(
            f"The mask is empty on frames {sequence.format_frames(analysis.empty)}; they pass through unchanged."
        )
    return notes


class _Plates:
    """The plates as the backend is fed them, and again for the composite.

    Frames fed and not yet returned are remembered with whether their plate had NaN/Inf pixels; their
    pixels are read again for the composite rather than kept: a backend's window (85 frames for VOID)
    of full-resolution plates would not fit in memory at 4K."""

    def __init__(
        self,
        prepared: PreparedJob,
        work: ProcessingPlan,
        transform: colour.ModelTransform,
        cancelled: Callable[[], bool],
    ) -> None:
        assert prepared.source.header is not None
        self.prepared, self.work, self.transform, self.cancelled = prepared, work, transform, cancelled
        self.plate = prepared.source.header
        self.pending: dict[int, bool] = {}

    def load(self, frame: int) -> Loaded:
        """The frame's plate (all its channels; it must keep the first frame's size) and its quadmask."""
        prepared, plate = self.prepared, self.plate
        source = prepared.source.read(frame, all_channels=True)
        if (source.spec.width, source.spec.height) != (plate.width, plate.height):
            raise InvalidInput(
                f"spec.source: frame {frame} ({source.path}) is {source.spec.width}x{source.spec.height}, "
                f"frame {prepared.first} is {plate.width}x{plate.height}; a shot must keep one size",
                reason="SIZE_MISMATCH",
                field="spec.source",
                file=source.path,
                frame=frame,
            )
        qm, _ = frame_quadmask(prepared, frame, source.spec)
        return frame, source, qm

    def feed(self, frames: Iterable[int]) -> Iterator[BackendFrame]:
        """The frames in model space at the backend's size, read ahead; NaN/Inf treated as black."""
        prepared, work = self.prepared, self.work
        for frame, source, qm in read_ahead(frames, self.load):
            check_cancelled(self.cancelled)
            rgb = source.pixels[..., prepared.source.rgb]
            bad = not np.isfinite(rgb).all()
            if bad:
                rgb = np.nan_to_num(rgb, nan=0.0, posinf=0.0, neginf=0.0)
            self.pending[frame] = bad
            model = self.transform.to_model(work.to_backend(rgb))
            grown = quadmask.grow_for_feather(qm, prepared.feather)
            yield BackendFrame(frame, np.ascontiguousarray(model, dtype=np.float32), work.quadmask_to_backend(grown))

    def returned(self, index: int, backend_name: str) -> bool:
        """A frame came back: forget it and every earlier one; whether its plate had NaN/Inf pixels."""
        bad = self.pending.pop(index, None)
        if bad is None:
            raise RuntimeError(f"backend {backend_name} returned frame {index}, which was not fed")
        for old in [f for f in self.pending if f < index]:
            self.pending.pop(old)
        return bad


class _StagedWriter:
    """Each returned frame composited over its plate, in the output's colour space, written staged
    with the provenance in its header; the raw model output beside it when the job asks."""

    def __init__(
        self,
        prepared: PreparedJob,
        work: ProcessingPlan,
        transform: colour.ModelTransform,
        staging: Path,
        job_id: str,
        made_by: dict[str, str],
    ) -> None:
        self.prepared, self.work, self.transform, self.staging, self.job_id = prepared, work, transform, staging, job_id
        self.made_by = made_by
        self.to_output = None
        if prepared.output_colorspace != prepared.source_colorspace:
            cfg = colour.config()
            self.to_output = cfg.getProcessor(
                prepared.source_colorspace, prepared.output_colorspace
            ).getDefaultCPUProcessor()

    def write(self, loaded: Loaded, result: BackendResult) -> None:
        prepared = self.prepared
        _, source, qm = loaded
        out, weight = composite_frame(prepared, self.work, self.transform, source, qm, result)
        layers = None
        if prepared.layers:
            # The delta is taken in the plate's colour space, from RGB as the file will hold it.
            written = out if self.to_output is not None else _rounded(out, prepared.pixel_type)
            layers = composite.change_layers(source.pixels, written, prepared.source.rgb, weight, qm)
            composite.add_back(written, source.pixels, prepared.source.rgb, layers)
            out = written
        if self.to_output is not None:
            rgb_index = prepared.source.rgb
            converted = np.ascontiguousarray(out[..., rgb_index])
            self.to_output.applyRGB(converted)
            out[..., rgb_index] = converted
        names = list(source.channels)
        channel_types = None
        if layers is not None:
            # A layered plate (an earlier result) has ours already: they are replaced, not doubled.
            kept = [i for i, name in enumerate(names) if not name.startswith(composite.LAYER_PREFIX)]
            out = np.concatenate([out[..., kept], layers], axis=2)
            names = [names[i] for i in kept] + list(composite.LAYER_CHANNELS)
            # A float delta adds back onto a half plate exactly; the mattes are fine at the file's type.
            channel_types = dict.fromkeys(composite.DELTA_CHANNELS, "float")
        target = staged_path(self.staging, "output", prepared.output, result.index)
        spec = image.output_spec(
            source.spec,
            out.shape[2],
            names,
            prepared.pixel_type,
            prepared.compression,
            str(target),
            attributes={f"{image.OWN_PREFIX}{key}": value for key, value in self.made_by.items()},
            channel_types=channel_types,
        )
        if prepared.raw_output is not None:  # before the output: a frame counts as done once its output is staged
            image.write_image(
                str(staged_path(self.staging, "raw", prepared.raw_output, result.index)),
                np.clip(result.image, 0.0, 1.0),
                pixel_type="uint8",
                attributes={image.JOB_ATTRIBUTE: self.job_id},
            )
        image.write_image(str(target), out, spec)


def composite_frame(
    prepared: PreparedJob,
    work: ProcessingPlan,
    transform: colour.ModelTransform,
    source: image.ImageFrame,
    qm: np.ndarray,
    result: BackendResult,
) -> tuple[np.ndarray, np.ndarray]:
    """The backend's fill scaled and pasted back, out of model space, composited over the plate's pixels
    through the feathered quadmask (and the backend's own change mask, when it gives one); and the blend
    weight each pixel took the fill with (the `void.change` layer)."""
    frame_shape = source.pixels.shape[:2]
    filled = transform.from_model(work.from_backend(np.asarray(result.image, np.float32)))
    filled = composite.paste(work, filled, frame_shape)
    alpha = quadmask.composite_alpha(qm, prepared.feather)
    changed = None
    if result.changed is not None:
        changed = composite.paste(
            work, work.from_backend(np.asarray(result.changed, np.float32))[..., None], frame_shape
        )[..., 0]
    rgb = prepared.source.rgb
    if len(set(rgb)) == 1:  # a grey plate read as R=G=B: write back one channel
        rgb, filled = rgb[:1], filled.mean(axis=2, keepdims=True)
    return composite.composite(source.pixels, rgb, filled, alpha, changed), composite.blend_weight(alpha, changed)


def _rounded(pixels: np.ndarray, pixel_type: str) -> np.ndarray:
    """The pixels as a file of `pixel_type` holds them (half rounds; float is already exact)."""
    if pixel_type == "half":
        with np.errstate(over="ignore"):
            return pixels.astype(np.float16).astype(np.float32)
    return pixels


def _preview_pixels(model: np.ndarray, width: int = 256) -> np.ndarray:
    """A small copy of the backend's output for the watchers' preview."""
    import cv2

    h, w = model.shape[:2]
    if w > width:
        model = cv2.resize(model, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return np.clip(model, 0.0, 1.0)
