from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProtocolVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTOCOL_VERSION_UNSPECIFIED: _ClassVar[ProtocolVersion]
    PROTOCOL_VERSION_CURRENT: _ClassVar[ProtocolVersion]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_UPLOADING: _ClassVar[JobState]

class PixelType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_TYPE_UNSPECIFIED: _ClassVar[PixelType]
    PIXEL_TYPE_HALF: _ClassVar[PixelType]
    PIXEL_TYPE_FLOAT: _ClassVar[PixelType]
    PIXEL_TYPE_UINT8: _ClassVar[PixelType]

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_UNSPECIFIED: _ClassVar[Compression]
    COMPRESSION_ZIP: _ClassVar[Compression]
    COMPRESSION_PIZ: _ClassVar[Compression]
    COMPRESSION_DWAA: _ClassVar[Compression]
    COMPRESSION_NONE: _ClassVar[Compression]

class Quality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_UNSPECIFIED: _ClassVar[Quality]
    QUALITY_DRAFT: _ClassVar[Quality]
    QUALITY_BALANCED: _ClassVar[Quality]
    QUALITY_BEST: _ClassVar[Quality]

class CropMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CROP_MODE_UNSPECIFIED: _ClassVar[CropMode]
    CROP_MODE_AUTO: _ClassVar[CropMode]
    CROP_MODE_FULL_FRAME: _ClassVar[CropMode]
    CROP_MODE_SHOT: _ClassVar[CropMode]
    CROP_MODE_WINDOW: _ClassVar[CropMode]
PROTOCOL_VERSION_UNSPECIFIED: ProtocolVersion
PROTOCOL_VERSION_CURRENT: ProtocolVersion
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_UPLOADING: JobState
PIXEL_TYPE_UNSPECIFIED: PixelType
PIXEL_TYPE_HALF: PixelType
PIXEL_TYPE_FLOAT: PixelType
PIXEL_TYPE_UINT8: PixelType
COMPRESSION_UNSPECIFIED: Compression
COMPRESSION_ZIP: Compression
COMPRESSION_PIZ: Compression
COMPRESSION_DWAA: Compression
COMPRESSION_NONE: Compression
QUALITY_UNSPECIFIED: Quality
QUALITY_DRAFT: Quality
QUALITY_BALANCED: Quality
QUALITY_BEST: Quality
CROP_MODE_UNSPECIFIED: CropMode
CROP_MODE_AUTO: CropMode
CROP_MODE_FULL_FRAME: CropMode
CROP_MODE_SHOT: CropMode
CROP_MODE_WINDOW: CropMode

class MatteOptions(_message.Message):
    __slots__ = ("is_quadmask", "threshold", "dilate", "feather", "invert")
    IS_QUADMASK_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DILATE_FIELD_NUMBER: _ClassVar[int]
    FEATHER_FIELD_NUMBER: _ClassVar[int]
    INVERT_FIELD_NUMBER: _ClassVar[int]
    is_quadmask: bool
    threshold: float
    dilate: int
    feather: float
    invert: bool
    def __init__(self, is_quadmask: bool = ..., threshold: _Optional[float] = ..., dilate: _Optional[int] = ..., feather: _Optional[float] = ..., invert: bool = ...) -> None: ...

class ClipSpec(_message.Message):
    __slots__ = ("otio_json", "channels", "part", "colorspace", "matte", "uploaded_frames")
    OTIO_JSON_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    COLORSPACE_FIELD_NUMBER: _ClassVar[int]
    MATTE_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    otio_json: str
    channels: str
    part: str
    colorspace: str
    matte: MatteOptions
    uploaded_frames: _containers.RepeatedCompositeFieldContainer[FrameRef]
    def __init__(self, otio_json: _Optional[str] = ..., channels: _Optional[str] = ..., part: _Optional[str] = ..., colorspace: _Optional[str] = ..., matte: _Optional[_Union[MatteOptions, _Mapping]] = ..., uploaded_frames: _Optional[_Iterable[_Union[FrameRef, _Mapping]]] = ...) -> None: ...

class FrameRef(_message.Message):
    __slots__ = ("sha256", "size", "frame")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    frame: int
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., frame: _Optional[int] = ...) -> None: ...

class FrameRange(_message.Message):
    __slots__ = ("first", "last")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...

class JobParams(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "backend", "passes", "steps", "guidance", "seed", "quality", "crop_mode", "priority", "resample_mattes")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PASSES_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    CROP_MODE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RESAMPLE_MATTES_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    backend: str
    passes: int
    steps: int
    guidance: float
    seed: int
    quality: Quality
    crop_mode: CropMode
    priority: int
    resample_mattes: bool
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., backend: _Optional[str] = ..., passes: _Optional[int] = ..., steps: _Optional[int] = ..., guidance: _Optional[float] = ..., seed: _Optional[int] = ..., quality: _Optional[_Union[Quality, str]] = ..., crop_mode: _Optional[_Union[CropMode, str]] = ..., priority: _Optional[int] = ..., resample_mattes: bool = ...) -> None: ...

class OutputSpec(_message.Message):
    __slots__ = ("path_template", "pixel_type", "compression", "colorspace", "write_quadmask", "quadmask_template", "write_raw", "raw_template", "stream_back", "overwrite", "write_layers")
    PATH_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PIXEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    COLORSPACE_FIELD_NUMBER: _ClassVar[int]
    WRITE_QUADMASK_FIELD_NUMBER: _ClassVar[int]
    QUADMASK_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    WRITE_RAW_FIELD_NUMBER: _ClassVar[int]
    RAW_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    STREAM_BACK_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    WRITE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    path_template: str
    pixel_type: PixelType
    compression: Compression
    colorspace: str
    write_quadmask: bool
    quadmask_template: str
    write_raw: bool
    raw_template: str
    stream_back: bool
    overwrite: bool
    write_layers: bool
    def __init__(self, path_template: _Optional[str] = ..., pixel_type: _Optional[_Union[PixelType, str]] = ..., compression: _Optional[_Union[Compression, str]] = ..., colorspace: _Optional[str] = ..., write_quadmask: bool = ..., quadmask_template: _Optional[str] = ..., write_raw: bool = ..., raw_template: _Optional[str] = ..., stream_back: bool = ..., overwrite: bool = ..., write_layers: bool = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("name", "source", "mask", "affected", "frames", "params", "output", "labels", "matte")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MATTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: ClipSpec
    mask: ClipSpec
    affected: ClipSpec
    frames: FrameRange
    params: JobParams
    output: OutputSpec
    labels: _containers.ScalarMap[str, str]
    matte: MatteParams
    def __init__(self, name: _Optional[str] = ..., source: _Optional[_Union[ClipSpec, _Mapping]] = ..., mask: _Optional[_Union[ClipSpec, _Mapping]] = ..., affected: _Optional[_Union[ClipSpec, _Mapping]] = ..., frames: _Optional[_Union[FrameRange, _Mapping]] = ..., params: _Optional[_Union[JobParams, _Mapping]] = ..., output: _Optional[_Union[OutputSpec, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., matte: _Optional[_Union[MatteParams, _Mapping]] = ...) -> None: ...

class MattePoint(_message.Message):
    __slots__ = ("x", "y", "negative")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    negative: bool
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., negative: bool = ...) -> None: ...

class MatteBox(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: float
    y0: float
    x1: float
    y1: float
    def __init__(self, x0: _Optional[float] = ..., y0: _Optional[float] = ..., x1: _Optional[float] = ..., y1: _Optional[float] = ...) -> None: ...

class MattePrompt(_message.Message):
    __slots__ = ("frame", "points", "boxes", "outline")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    OUTLINE_FIELD_NUMBER: _ClassVar[int]
    frame: int
    points: _containers.RepeatedCompositeFieldContainer[MattePoint]
    boxes: _containers.RepeatedCompositeFieldContainer[MatteBox]
    outline: _containers.RepeatedCompositeFieldContainer[MattePoint]
    def __init__(self, frame: _Optional[int] = ..., points: _Optional[_Iterable[_Union[MattePoint, _Mapping]]] = ..., boxes: _Optional[_Iterable[_Union[MatteBox, _Mapping]]] = ..., outline: _Optional[_Iterable[_Union[MattePoint, _Mapping]]] = ...) -> None: ...

class MatteParams(_message.Message):
    __slots__ = ("prompts", "affected_text", "propose_affected", "tracker", "affected_template", "affected_grid")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_TEXT_FIELD_NUMBER: _ClassVar[int]
    PROPOSE_AFFECTED_FIELD_NUMBER: _ClassVar[int]
    TRACKER_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_GRID_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedCompositeFieldContainer[MattePrompt]
    affected_text: str
    propose_affected: bool
    tracker: str
    affected_template: str
    affected_grid: int
    def __init__(self, prompts: _Optional[_Iterable[_Union[MattePrompt, _Mapping]]] = ..., affected_text: _Optional[str] = ..., propose_affected: bool = ..., tracker: _Optional[str] = ..., affected_template: _Optional[str] = ..., affected_grid: _Optional[int] = ...) -> None: ...

class MatteFinding(_message.Message):
    __slots__ = ("check", "severity", "message", "frame")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    check: str
    severity: str
    message: str
    frame: int
    def __init__(self, check: _Optional[str] = ..., severity: _Optional[str] = ..., message: _Optional[str] = ..., frame: _Optional[int] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("reason", "message", "field", "file", "frame", "frames")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    field: str
    file: str
    frame: int
    frames: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ..., file: _Optional[str] = ..., frame: _Optional[int] = ..., frames: _Optional[_Iterable[int]] = ...) -> None: ...

class Preview(_message.Message):
    __slots__ = ("width", "height", "png", "frame")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    png: bytes
    frame: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., png: _Optional[bytes] = ..., frame: _Optional[int] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("output_pattern", "frames", "otio_json", "quadmask_pattern", "raw_pattern", "backend", "notes", "metrics", "provenance", "findings", "affected_pattern")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ProvenanceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OUTPUT_PATTERN_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    OTIO_JSON_FIELD_NUMBER: _ClassVar[int]
    QUADMASK_PATTERN_FIELD_NUMBER: _ClassVar[int]
    RAW_PATTERN_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_PATTERN_FIELD_NUMBER: _ClassVar[int]
    output_pattern: str
    frames: FrameRange
    otio_json: str
    quadmask_pattern: str
    raw_pattern: str
    backend: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    metrics: _containers.ScalarMap[str, float]
    provenance: _containers.ScalarMap[str, str]
    findings: _containers.RepeatedCompositeFieldContainer[MatteFinding]
    affected_pattern: str
    def __init__(self, output_pattern: _Optional[str] = ..., frames: _Optional[_Union[FrameRange, _Mapping]] = ..., otio_json: _Optional[str] = ..., quadmask_pattern: _Optional[str] = ..., raw_pattern: _Optional[str] = ..., backend: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., provenance: _Optional[_Mapping[str, str]] = ..., findings: _Optional[_Iterable[_Union[MatteFinding, _Mapping]]] = ..., affected_pattern: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "spec", "state", "stage", "frames_done", "frames_total", "created_at", "started_at", "finished_at", "error", "result", "message", "eta_seconds", "attempts", "owner")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: JobSpec
    state: JobState
    stage: str
    frames_done: int
    frames_total: int
    created_at: float
    started_at: float
    finished_at: float
    error: ErrorDetail
    result: JobResult
    message: str
    eta_seconds: float
    attempts: int
    owner: str
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[str] = ..., frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., error: _Optional[_Union[ErrorDetail, _Mapping]] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., message: _Optional[str] = ..., eta_seconds: _Optional[float] = ..., attempts: _Optional[int] = ..., owner: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "state", "stage", "frames_done", "frames_total", "eta_seconds", "message", "preview", "error", "result", "time", "frame", "transfer")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    stage: str
    frames_done: int
    frames_total: int
    eta_seconds: float
    message: str
    preview: Preview
    error: ErrorDetail
    result: JobResult
    time: float
    frame: int
    transfer: TransferProgress
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[str] = ..., frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., eta_seconds: _Optional[float] = ..., message: _Optional[str] = ..., preview: _Optional[_Union[Preview, _Mapping]] = ..., error: _Optional[_Union[ErrorDetail, _Mapping]] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., time: _Optional[float] = ..., frame: _Optional[int] = ..., transfer: _Optional[_Union[TransferProgress, _Mapping]] = ...) -> None: ...

class TransferProgress(_message.Message):
    __slots__ = ("direction", "files_done", "files_total", "bytes_done", "bytes_total", "bytes_reused")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_REUSED_FIELD_NUMBER: _ClassVar[int]
    direction: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    bytes_reused: int
    def __init__(self, direction: _Optional[str] = ..., files_done: _Optional[int] = ..., files_total: _Optional[int] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., bytes_reused: _Optional[int] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("spec", "upload_follows", "validate_only")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FOLLOWS_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    upload_follows: bool
    validate_only: bool
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., upload_follows: bool = ..., validate_only: bool = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "previews")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIEWS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    previews: bool
    def __init__(self, job_id: _Optional[str] = ..., previews: bool = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "limit", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    limit: int
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Device(_message.Message):
    __slots__ = ("name", "kind", "description", "memory_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    description: str
    memory_bytes: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., description: _Optional[str] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class BackendInfo(_message.Message):
    __slots__ = ("name", "available", "reason", "detail", "loaded", "licences")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    LICENCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    available: bool
    reason: str
    detail: str
    loaded: bool
    licences: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., available: bool = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., loaded: bool = ..., licences: _Optional[_Iterable[str]] = ...) -> None: ...

class QueueInfo(_message.Message):
    __slots__ = ("queued", "running")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    queued: int
    running: int
    def __init__(self, queued: _Optional[int] = ..., running: _Optional[int] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("version", "protocol_version", "devices", "backends", "queue", "data_dir", "default_backend", "libraries", "pid", "roots", "confined", "tls", "tokens_required", "max_message_bytes", "max_upload_bytes", "cache_max_bytes", "cache_bytes", "matte_trackers")
    class LibrariesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BACKEND_FIELD_NUMBER: _ClassVar[int]
    LIBRARIES_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    CONFINED_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MATTE_TRACKERS_FIELD_NUMBER: _ClassVar[int]
    version: str
    protocol_version: int
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    backends: _containers.RepeatedCompositeFieldContainer[BackendInfo]
    queue: QueueInfo
    data_dir: str
    default_backend: str
    libraries: _containers.ScalarMap[str, str]
    pid: int
    roots: _containers.RepeatedScalarFieldContainer[str]
    confined: bool
    tls: bool
    tokens_required: bool
    max_message_bytes: int
    max_upload_bytes: int
    cache_max_bytes: int
    cache_bytes: int
    matte_trackers: _containers.RepeatedCompositeFieldContainer[BackendInfo]
    def __init__(self, version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., backends: _Optional[_Iterable[_Union[BackendInfo, _Mapping]]] = ..., queue: _Optional[_Union[QueueInfo, _Mapping]] = ..., data_dir: _Optional[str] = ..., default_backend: _Optional[str] = ..., libraries: _Optional[_Mapping[str, str]] = ..., pid: _Optional[int] = ..., roots: _Optional[_Iterable[str]] = ..., confined: bool = ..., tls: bool = ..., tokens_required: bool = ..., max_message_bytes: _Optional[int] = ..., max_upload_bytes: _Optional[int] = ..., cache_max_bytes: _Optional[int] = ..., cache_bytes: _Optional[int] = ..., matte_trackers: _Optional[_Iterable[_Union[BackendInfo, _Mapping]]] = ...) -> None: ...

class ProbePathsRequest(_message.Message):
    __slots__ = ("paths", "write")
    PATHS_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedScalarFieldContainer[str]
    write: bool
    def __init__(self, paths: _Optional[_Iterable[str]] = ..., write: bool = ...) -> None: ...

class PathProbe(_message.Message):
    __slots__ = ("path", "allowed", "exists", "usable", "reason")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    USABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    path: str
    allowed: bool
    exists: bool
    usable: bool
    reason: str
    def __init__(self, path: _Optional[str] = ..., allowed: bool = ..., exists: bool = ..., usable: bool = ..., reason: _Optional[str] = ...) -> None: ...

class ProbePathsResponse(_message.Message):
    __slots__ = ("paths",)
    PATHS_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedCompositeFieldContainer[PathProbe]
    def __init__(self, paths: _Optional[_Iterable[_Union[PathProbe, _Mapping]]] = ...) -> None: ...

class HasFramesRequest(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[FrameRef]
    def __init__(self, frames: _Optional[_Iterable[_Union[FrameRef, _Mapping]]] = ...) -> None: ...

class FrameStatus(_message.Message):
    __slots__ = ("sha256", "present", "offset")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    present: bool
    offset: int
    def __init__(self, sha256: _Optional[str] = ..., present: bool = ..., offset: _Optional[int] = ...) -> None: ...

class HasFramesResponse(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[FrameStatus]
    def __init__(self, frames: _Optional[_Iterable[_Union[FrameStatus, _Mapping]]] = ...) -> None: ...

class FrameChunk(_message.Message):
    __slots__ = ("sha256", "size", "offset", "data")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    offset: int
    data: bytes
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class FrameAck(_message.Message):
    __slots__ = ("sha256", "offset", "complete")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offset: int
    complete: bool
    def __init__(self, sha256: _Optional[str] = ..., offset: _Optional[int] = ..., complete: bool = ...) -> None: ...

class DownloadResultRequest(_message.Message):
    __slots__ = ("job_id", "have")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    HAVE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    have: _containers.RepeatedCompositeFieldContainer[FileDigest]
    def __init__(self, job_id: _Optional[str] = ..., have: _Optional[_Iterable[_Union[FileDigest, _Mapping]]] = ...) -> None: ...

class FileDigest(_message.Message):
    __slots__ = ("relative_path", "sha256")
    RELATIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    relative_path: str
    sha256: str
    def __init__(self, relative_path: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("relative_path", "kind", "frame", "size", "offset", "data", "sha256", "files_total", "bytes_total")
    RELATIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    relative_path: str
    kind: str
    frame: int
    size: int
    offset: int
    data: bytes
    sha256: str
    files_total: int
    bytes_total: int
    def __init__(self, relative_path: _Optional[str] = ..., kind: _Optional[str] = ..., frame: _Optional[int] = ..., size: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[str] = ..., files_total: _Optional[int] = ..., bytes_total: _Optional[int] = ...) -> None: ...
