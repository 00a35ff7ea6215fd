from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedbackRequest(_message.Message):
    __slots__ = ("client", "event", "count")
    class Event(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        EVENT_UNSPECIFIED: _ClassVar[FeedbackRequest.Event]
        SHOWN: _ClassVar[FeedbackRequest.Event]
        ACCEPTED: _ClassVar[FeedbackRequest.Event]
        PARTIALLY_ACCEPTED: _ClassVar[FeedbackRequest.Event]
        DISMISSED: _ClassVar[FeedbackRequest.Event]
    EVENT_UNSPECIFIED: FeedbackRequest.Event
    SHOWN: FeedbackRequest.Event
    ACCEPTED: FeedbackRequest.Event
    PARTIALLY_ACCEPTED: FeedbackRequest.Event
    DISMISSED: FeedbackRequest.Event
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    client: str
    event: FeedbackRequest.Event
    count: int
    def __init__(self, client: _Optional[str] = ..., event: _Optional[_Union[FeedbackRequest.Event, str]] = ..., count: _Optional[int] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClientFeedback(_message.Message):
    __slots__ = ("client", "shown", "accepted", "partially_accepted", "dismissed")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SHOWN_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PARTIALLY_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DISMISSED_FIELD_NUMBER: _ClassVar[int]
    client: str
    shown: int
    accepted: int
    partially_accepted: int
    dismissed: int
    def __init__(self, client: _Optional[str] = ..., shown: _Optional[int] = ..., accepted: _Optional[int] = ..., partially_accepted: _Optional[int] = ..., dismissed: _Optional[int] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("prefix", "suffix", "path", "document_id", "n", "max_chars", "temperature", "min_confidence")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    suffix: str
    path: str
    document_id: str
    n: int
    max_chars: int
    temperature: float
    min_confidence: float
    def __init__(self, prefix: _Optional[str] = ..., suffix: _Optional[str] = ..., path: _Optional[str] = ..., document_id: _Optional[str] = ..., n: _Optional[int] = ..., max_chars: _Optional[int] = ..., temperature: _Optional[float] = ..., min_confidence: _Optional[float] = ...) -> None: ...

class WarmRequest(_message.Message):
    __slots__ = ("document_id", "path", "text")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    path: str
    text: str
    def __init__(self, document_id: _Optional[str] = ..., path: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class WarmResponse(_message.Message):
    __slots__ = ("chars_read",)
    CHARS_READ_FIELD_NUMBER: _ClassVar[int]
    chars_read: int
    def __init__(self, chars_read: _Optional[int] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("text", "confidence")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    text: str
    confidence: float
    def __init__(self, text: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("candidates", "model_version")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    model_version: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "created_unix", "val_bpc", "parameters", "vocab_size", "train_files", "val_files", "train_chars", "commit", "config_json", "bundle_dir")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    VAL_BPC_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FILES_FIELD_NUMBER: _ClassVar[int]
    VAL_FILES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_CHARS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_DIR_FIELD_NUMBER: _ClassVar[int]
    version: str
    created_unix: float
    val_bpc: float
    parameters: int
    vocab_size: int
    train_files: int
    val_files: int
    train_chars: int
    commit: str
    config_json: str
    bundle_dir: str
    def __init__(self, version: _Optional[str] = ..., created_unix: _Optional[float] = ..., val_bpc: _Optional[float] = ..., parameters: _Optional[int] = ..., vocab_size: _Optional[int] = ..., train_files: _Optional[int] = ..., val_files: _Optional[int] = ..., train_chars: _Optional[int] = ..., commit: _Optional[str] = ..., config_json: _Optional[str] = ..., bundle_dir: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("repo", "store", "model", "training_state", "last_training_result", "requests_total", "requests_failed", "uptime_seconds", "listen_address", "daemon_version", "execution_provider", "pid", "watching", "file_events", "versions", "feedback", "retrieval", "training", "started_by", "idle_exit_minutes", "stops_unix", "base_build")
    REPO_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_TRAINING_RESULT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LISTEN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DAEMON_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    WATCHING_FIELD_NUMBER: _ClassVar[int]
    FILE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    IDLE_EXIT_MINUTES_FIELD_NUMBER: _ClassVar[int]
    STOPS_UNIX_FIELD_NUMBER: _ClassVar[int]
    BASE_BUILD_FIELD_NUMBER: _ClassVar[int]
    repo: str
    store: str
    model: ModelInfo
    training_state: str
    last_training_result: str
    requests_total: int
    requests_failed: int
    uptime_seconds: float
    listen_address: str
    daemon_version: str
    execution_provider: str
    pid: int
    watching: bool
    file_events: int
    versions: _containers.RepeatedScalarFieldContainer[str]
    feedback: _containers.RepeatedCompositeFieldContainer[ClientFeedback]
    retrieval: RetrievalInfo
    training: TrainingProgress
    started_by: str
    idle_exit_minutes: float
    stops_unix: float
    base_build: BaseBuild
    def __init__(self, repo: _Optional[str] = ..., store: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., training_state: _Optional[str] = ..., last_training_result: _Optional[str] = ..., requests_total: _Optional[int] = ..., requests_failed: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., listen_address: _Optional[str] = ..., daemon_version: _Optional[str] = ..., execution_provider: _Optional[str] = ..., pid: _Optional[int] = ..., watching: _Optional[bool] = ..., file_events: _Optional[int] = ..., versions: _Optional[_Iterable[str]] = ..., feedback: _Optional[_Iterable[_Union[ClientFeedback, _Mapping]]] = ..., retrieval: _Optional[_Union[RetrievalInfo, _Mapping]] = ..., training: _Optional[_Union[TrainingProgress, _Mapping]] = ..., started_by: _Optional[str] = ..., idle_exit_minutes: _Optional[float] = ..., stops_unix: _Optional[float] = ..., base_build: _Optional[_Union[BaseBuild, _Mapping]] = ...) -> None: ...

class BaseBuild(_message.Message):
    __slots__ = ("state", "language", "fraction", "eta_seconds", "failures", "message")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    state: str
    language: str
    fraction: float
    eta_seconds: float
    failures: int
    message: str
    def __init__(self, state: _Optional[str] = ..., language: _Optional[str] = ..., fraction: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., failures: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class RetrievalInfo(_message.Message):
    __slots__ = ("enabled", "indexed_chars", "indexed_places", "model_below", "calibrated", "start_below", "declined_below", "index_updated_unix", "index_pending_files", "index_updated_files", "index_rebuilds", "index_rebuilding", "index_error")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    INDEXED_CHARS_FIELD_NUMBER: _ClassVar[int]
    INDEXED_PLACES_FIELD_NUMBER: _ClassVar[int]
    MODEL_BELOW_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    START_BELOW_FIELD_NUMBER: _ClassVar[int]
    DECLINED_BELOW_FIELD_NUMBER: _ClassVar[int]
    INDEX_UPDATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    INDEX_PENDING_FILES_FIELD_NUMBER: _ClassVar[int]
    INDEX_UPDATED_FILES_FIELD_NUMBER: _ClassVar[int]
    INDEX_REBUILDS_FIELD_NUMBER: _ClassVar[int]
    INDEX_REBUILDING_FIELD_NUMBER: _ClassVar[int]
    INDEX_ERROR_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    indexed_chars: int
    indexed_places: int
    model_below: float
    calibrated: bool
    start_below: float
    declined_below: float
    index_updated_unix: float
    index_pending_files: int
    index_updated_files: int
    index_rebuilds: int
    index_rebuilding: bool
    index_error: str
    def __init__(self, enabled: _Optional[bool] = ..., indexed_chars: _Optional[int] = ..., indexed_places: _Optional[int] = ..., model_below: _Optional[float] = ..., calibrated: _Optional[bool] = ..., start_below: _Optional[float] = ..., declined_below: _Optional[float] = ..., index_updated_unix: _Optional[float] = ..., index_pending_files: _Optional[int] = ..., index_updated_files: _Optional[int] = ..., index_rebuilds: _Optional[int] = ..., index_rebuilding: _Optional[bool] = ..., index_error: _Optional[str] = ...) -> None: ...

class RetrainRequest(_message.Message):
    __slots__ = ("minutes", "full")
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    minutes: float
    full: bool
    def __init__(self, minutes: _Optional[float] = ..., full: _Optional[bool] = ...) -> None: ...

class TrainingProgress(_message.Message):
    __slots__ = ("phase", "fraction", "eta_seconds", "val_bpc", "message", "model_version")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VAL_BPC_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    phase: str
    fraction: float
    eta_seconds: float
    val_bpc: float
    message: str
    model_version: str
    def __init__(self, phase: _Optional[str] = ..., fraction: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., val_bpc: _Optional[float] = ..., message: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...
