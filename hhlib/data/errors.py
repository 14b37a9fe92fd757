"""Errors raised by :mod:`hhlib.data`.

Every message names the file (and the list line, where there is one) and,
for a missing dataset, says where to put it or which command fetches it, so
that bad input fails before training starts instead of halfway through an
epoch (issue 5, item 4).
"""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset, or an image a list file names, is not where it should be."""


class DataFormatError(ValueError):
    """A data file exists but its content is malformed (IDX, list or split file)."""


class ImageDecodeError(DataFormatError):
    """An image listed in a list file could not be decoded while iterating."""


class SplitMismatchError(ValueError):
    """A saved split does not belong to the labels it is applied to."""
