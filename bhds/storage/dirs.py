"""Folders swapped in whole: a reader sees the old tree or the new one, never a half-built one."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import sys
import uuid
from pathlib import Path

from bhds.errors import DataError
from bhds.paths import retired_dir, swap_home, swap_leftovers
from bhds.storage import journal
from bhds.storage.files import _disk_error, remove_tree


def replace_dir(new: Path, target: Path) -> None:
    """Swap the fully built directory `new` in for `target`, then delete the old tree.

    Readers see the old tree or the new one, never a half-built one. On Linux the two trade places
    in one atomic step (renameat2 RENAME_EXCHANGE), so `target` never goes missing. Elsewhere the
    old tree is renamed aside and the new one in; a run killed between those two renames leaves the
    old tree aside, and `recover_dir` puts it back. When `target` is a symlink (say, to another
    disk) the swap happens at its destination, and the link stays; `new` must be its
    `paths.staging_dir`, which lies on the destination's file system.
    """
    home = swap_home(target)
    try:
        if home.exists() and _exchange(new, home):
            remove_tree(new)  # `new` now holds the old tree
            journal.replaced_tree(target)
            return
    except OSError as exc:
        raise _disk_error(target, exc) from exc
    aside = retired_dir(home, uuid.uuid4().hex[:8])
    try:
        if home.exists():
            os.rename(home, aside)
        os.rename(new, home)
    except OSError as exc:
        if aside.exists() and not home.exists():
            os.rename(aside, home)
        raise _disk_error(target, exc) from exc
    remove_tree(aside)
    journal.replaced_tree(target)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# Errors meaning "this kernel or file system cannot exchange": fall back to two renames.
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EPERM}


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False when the platform cannot (not Linux, old kernel or libc)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(b))


@functools.cache
def _renameat2():  # noqa: ANN202 - a ctypes function or None
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc before 2.28, or another libc without it
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def recover_dir(target: Path) -> None:
    """Clean up after a killed `replace_dir` of `target`: restore the old tree if it is missing, drop leftovers.

    Call it under the stage lock, before building a new tree. A `target` that is a symlink to a
    folder that is gone (an unmounted disk) is refused: building there would fill another disk.
    """
    home = swap_home(target)
    staging, retired = swap_leftovers(target)
    if retired and not home.exists():
        os.rename(retired[-1], home)
        retired = retired[:-1]
    for leftover in staging + retired:
        remove_tree(leftover)
    if target.is_symlink() and not home.is_dir():
        raise DataError(f"{target} is a symlink to {home}, which is not a folder: mount its disk or create the folder, "
                        "or replace the link with a folder, and run the command again")
