"""Storage facts every writer needs: whether a failed write ran out of space, and file checksums.

A leaf module (imports nothing of the project). A full disk does not always surface as ``OSError(ENOSPC)``: torch's
zip writer reports ``RuntimeError: ... unexpected pos``, safetensors ``SafetensorError: ... No space left``, numpy
``OSError: N requested and M written``, and a file-size limit (``ulimit -f``) ``EFBIG``. All of them mean the same
thing to a user: free space (or raise the limit) and resume.
"""

import errno
import re
import zlib
from pathlib import Path

SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
SPACE_MESSAGES = re.compile(r"no space left|disk quota|file too large|unexpected pos|requested and \d+ written|"
                            r"failed to write|enospc", re.IGNORECASE)


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def out_of_space(error: BaseException) -> bool:
    """Whether ``error`` (or one it was raised from) says the disk, a quota or a file-size limit is exhausted."""
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno in SPACE_ERRNOS:
            return True
        if SPACE_MESSAGES.search(str(link)):
            return True
    return False


def file_size_limit() -> int | None:
    """The process's file-size limit in bytes (``ulimit -f``), None when unlimited."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def space_reason(error: BaseException) -> str:
    """A short description of the space problem for messages."""
    for link in _chain(error):
        if (isinstance(link, OSError) and link.errno == errno.EFBIG) or "file too large" in str(link).lower():
            return "File too large: a file-size limit was hit, see `ulimit -f`"
        if isinstance(link, OSError) and link.errno == errno.EDQUOT:
            return "the disk quota is exhausted"
    if (limit := file_size_limit()) is not None:
        return (f"the disk is full, or a file reached this process's file-size limit of {limit:,} bytes (File too "
                "large: see `ulimit -f`)")
    return "no space left on the device"


def file_crc32(path: str | Path, chunk: int = 1 << 22) -> int:
    """CRC32 of a file's bytes (zlib: about a GB/s), to tell a damaged file from the one that was written."""
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc
