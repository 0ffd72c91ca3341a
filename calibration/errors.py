"""The calibration sources' errors (InputError: the user's file or folder is what is wrong)."""
from osnet_edge.errors import InputError


class CalibrationError(InputError):
    """A calibration source that is missing, empty, unreadable or too small."""


class VideoEnded(CalibrationError):
    """A video that has fewer frames than asked for."""
