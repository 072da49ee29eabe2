"""Errors the command line shows as one clear line (file, record, reason, what to do), never a traceback."""

from __future__ import annotations

import errno


class FdrdError(Exception):
    """A user-facing error: bad input, missing file, refused operation. The CLI prints it and exits 2."""


# OSErrors that say something about the machine, not about the code: what the user can do about each.
# Every writer of fdrd writes atomically (temporary name, then rename) and every long command resumes,
# so after fixing the cause a rerun continues where the failed one stopped.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full; free space and rerun the same command (it resumes)",
    errno.EDQUOT: "the disk quota is exhausted; free space and rerun the same command (it resumes)",
    errno.EROFS: "the file system is read-only; choose a writable --out",
    errno.EACCES: "permission denied; choose a folder you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you can write to, or fix its permissions",
    errno.ENOTDIR: "a path component is a file, not a folder; choose another --out",
    errno.EISDIR: "a folder stands where a file is expected; move it away or choose another path",
    errno.EEXIST: "a file stands where a folder is expected; choose another --out",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter --out",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) and rerun",
}


def os_error_message(error: OSError) -> str | None:
    """One line for an OSError a user can act on (disk full, read-only output, ...), or None for others."""
    hint = _OS_ERROR_HINTS.get(error.errno)
    if hint is None:
        return None
    where = error.filename if error.filename is not None else "fdrd"
    return f"{where}: {error.strerror or errno.errorcode.get(error.errno, error.errno)}; {hint}"
