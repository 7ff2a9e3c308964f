"""The project's exception types. Every message says what to do next."""

import errno

# a write refused for lack of room: a full disk, a quota, a file-size limit (ulimit -f)
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


# Ways out that a front end spells in its own terms (the CLI as flags): an error's `fix`.
FIX_WEIGHTS = "weights"  # give the model's weights file, or use the offline model
FIX_TORCH_BACKEND = "torch-backend"  # run the network with torch instead of ONNX Runtime
FIX_CPU = "cpu"  # run on the CPU
FIX_OTHER_INDEX = "other-index"  # use another index folder
FIX_INDEX_MODEL = "index-model"  # use the index's own model (fix_arg: its name)
FIX_RAY = "ray"  # install Ray


class ImgsimError(Exception):
    """Base class: the CLI prints these as one-line errors. The message is in the
    library's terms; `fix` (one of the FIX_* names) lets a front end add its own hint."""

    def __init__(self, *args: object, fix: str | None = None, fix_arg: str = ""):
        super().__init__(*args)
        self.fix, self.fix_arg = fix, fix_arg


class ModelError(ImgsimError):
    """A model cannot be built or its weights cannot be found."""


class IndexMismatchError(ImgsimError):
    """Vectors of another model, preprocessing or dimension than the index's."""


class IndexFormatError(ImgsimError):
    """The index folder is missing, damaged or of an unknown format."""


class IndexMissingError(IndexFormatError):
    """There is no index in the folder (no manifest.json)."""


class IndexLockedError(ImgsimError):
    """Another writer holds the index."""


class DecodeError(ImgsimError):
    """One file could not be turned into pixels; the run goes on without it."""


class InputError(ImgsimError):
    """A bad argument: a folder that does not exist, a value out of range."""


class ReportError(ImgsimError):
    """A report.json that is missing, damaged, or too old for apply or export."""


class DiskFullError(ImgsimError):
    """A write failed for lack of space; what was committed before it is kept."""


def no_space(what: str, why: object) -> DiskFullError:
    """The one-line error for a write of `what` that found no room (`why`: the cause)."""
    return DiskFullError(f"no space left on device while writing {what} ({why}); the index "
                         "keeps what was committed. Free some space and run the command again")


class ActionError(ImgsimError):
    """apply or undo cannot go ahead as asked (a bad destination, a journal in use, ...)."""


class RayMissingError(ImgsimError):
    """The Ray engine was asked for, but Ray (with Ray Data) is not installed."""


class EngineError(ImgsimError):
    """The cluster could not finish the work; what was committed is kept."""


class RequestRefused(ImgsimError):
    """A request to the service refused before it reaches a route: an HTTP status and why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class UploadTooLarge(ImgsimError):
    """An upload to the service over its size limit."""


class ImageTooLarge(ImgsimError):
    """An image whose header declares more pixels than the caller allows; nothing decoded."""


class ResultTooLarge(ImgsimError):
    """A search found more results than the caller's cap; it stopped there."""


class Cancelled(ImgsimError):
    """Work stopped because its caller asked (e.g. the client of a request left)."""


class ServiceBusy(ImgsimError):
    """Every slot for the asked work is taken; the caller may try again shortly."""
