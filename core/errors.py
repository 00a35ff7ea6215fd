"""The exception tree shared by training, daemon and clients.

Every error a user can meet is a `CompletiondError` with a message meant for them. The daemon's
single error boundary (`completiond.daemon.boundary`) maps each class to one gRPC status code, so
handlers raise these and never catch-and-convert themselves.
"""

from __future__ import annotations


class CompletiondError(Exception):
    """Base class: a failure with a message that can be shown to the user as it is."""

    grpc_code_name = "INTERNAL"


class InvalidRequest(CompletiondError):
    """A request field is out of range or malformed (gRPC INVALID_ARGUMENT)."""

    grpc_code_name = "INVALID_ARGUMENT"


class Cancelled(CompletiondError):
    """The client cancelled the request or its deadline passed (gRPC CANCELLED)."""

    grpc_code_name = "CANCELLED"


class DeadlineExceeded(Cancelled):
    """The request's deadline had passed before any work on it (gRPC DEADLINE_EXCEEDED)."""

    grpc_code_name = "DEADLINE_EXCEEDED"


class NoModel(CompletiondError):
    """No usable model bundle exists yet (gRPC UNAVAILABLE): train one first."""

    grpc_code_name = "UNAVAILABLE"


class TrainingBusy(CompletiondError):
    """A training run is already in progress (gRPC FAILED_PRECONDITION)."""

    grpc_code_name = "FAILED_PRECONDITION"


class CorpusError(CompletiondError):
    """The repository has nothing to train on (no readable, trainable files)."""

    grpc_code_name = "FAILED_PRECONDITION"


class DeviceUnavailable(CompletiondError, ValueError):
    """The requested training device does not exist on this machine."""

    grpc_code_name = "FAILED_PRECONDITION"


class TrainingFailed(CompletiondError):
    """A training run failed or was killed; the serving model is untouched."""

    grpc_code_name = "ABORTED"


class BundleError(CompletiondError):
    """A model bundle is missing a file, fails its hash check, or has the wrong shapes."""

    grpc_code_name = "FAILED_PRECONDITION"


class ExportError(CompletiondError):
    """The ONNX export does not reproduce the PyTorch model (parity check failed)."""


class DaemonUnreachable(CompletiondError):
    """A client found no daemon at the expected address."""

    grpc_code_name = "UNAVAILABLE"


class AlreadyRunning(CompletiondError):
    """Another daemon already serves this repository on this address."""


class UnsafePath(CompletiondError):
    """A socket or its directory is not this user's alone: owned by another user, a symlink, or
    open to others. Refused on both sides, since whoever controls it can impersonate the daemon."""

    grpc_code_name = "PERMISSION_DENIED"
