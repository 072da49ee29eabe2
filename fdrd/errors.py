"""Errors the command line shows as one clear line (file, record, reason, what to do), never a traceback."""


class FdrdError(Exception):
    """A user-facing error: bad input, missing file, refused operation. The CLI prints it and exits 2."""
