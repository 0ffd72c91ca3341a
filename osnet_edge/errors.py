"""Exceptions with messages meant for users: they say what was wrong and where."""


class OsnetEdgeError(Exception):
    """Base class: every error the SDK raises on bad input derives from it."""


class ModelConfigError(OsnetEdgeError, ValueError):
    """Unknown variant, width outside (0, 1], input too small."""


class CheckpointError(OsnetEdgeError):
    """A weights file that is missing, truncated, unsafe or of another architecture."""


class InputError(OsnetEdgeError, ValueError):
    """A crop, frame or box that cannot be embedded."""


class ArtifactError(OsnetEdgeError):
    """An exported model file that cannot be opened or lacks what it needs."""


class MissingDependencyError(OsnetEdgeError, ImportError):
    """An optional package is not installed; the message names the extra."""


class UsageError(OsnetEdgeError, ValueError):
    """A command line that cannot run as given (a value that does not parse, options that conflict): exit 2."""
