"""Exceptions raised by mmspec_widgets.

Every error a user can trigger with bad input is an :class:`MMSpecError`
(a ``ValueError``), whose message names the offending file or argument and
says what was expected.
"""

from __future__ import annotations

__all__ = ["MMSpecError", "FileFormatError", "DataError"]


class MMSpecError(ValueError):
    """Base class of the errors raised for bad input."""


class FileFormatError(MMSpecError):
    """A file could not be read: unknown extension, truncated or corrupt
    content, or no energy axis."""


class DataError(MMSpecError):
    """The data are unusable as given: NaN/inf, all-zero, wrong shape,
    window outside the energy range, mismatched zero-loss SI ..."""
