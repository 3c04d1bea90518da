"""Reading a data file a user names: a regular file only, and only up to MAX_BYTES, so that `--data
/dev/zero` is refused instead of read until memory runs out, and a FIFO instead of waited on for ever."""
from __future__ import annotations

import os
import stat

MAX_BYTES = 2**30
"""The largest data file kdtrack reads: CIFAR-100's largest file is 155 MB, a multi-domain file of 2-D
points this size would hold 40 million of them."""


class FileProblem(Exception):
    """Why a file cannot be read, in a few words (the caller names the file)."""


def read_regular_file(path: str | os.PathLike, limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file `path`, of at most `limit` bytes; FileProblem otherwise. It is opened
    without waiting (a FIFO would wait for a writer) and checked as opened (it cannot be swapped in between)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileProblem("no such file") from None
    except OSError as error:
        raise FileProblem(f"cannot read the file ({error.strerror})") from None
    try:
        _check_regular(descriptor, limit)
    except FileProblem:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as file:
        try:
            return file.read()
        except OSError as error:
            raise FileProblem(f"cannot read the file ({error.strerror})") from None


def _check_regular(descriptor: int, limit: int) -> None:
    status = os.fstat(descriptor)
    if stat.S_ISDIR(status.st_mode):
        raise FileProblem("is a directory, expected a file")
    if not stat.S_ISREG(status.st_mode):
        raise FileProblem(f"is not a regular file but {_kind(status.st_mode)}: kdtrack reads data from files only")
    if status.st_size > limit:
        raise FileProblem(f"is {status.st_size:,} bytes, more than the {limit:,} kdtrack reads from a data file")


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a file")

