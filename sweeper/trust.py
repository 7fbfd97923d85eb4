"""Pickled payloads between a launcher and its worker/detached processes, read only from private places.

A cloudpickle runs code when it is loaded, so whoever can write a payload file could run code in the
next job. Payloads are written into a directory only this user can enter (mode 0700) with files of
mode 0600, and are loaded only when the file and its directory belong to this user and nobody else
may write them (and the file is no symlink); anything else is refused with :class:`UntrustedPayloadError`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import cloudpickle

from sweeper.errors import UserError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class UntrustedPayloadError(UserError, PermissionError):
    """A payload whose file or directory another user could have written."""


def private_dir(path: Path) -> Path:
    """``path`` created (if needed) and made private to this user (the umask may have widened it)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def _problem(target: Path, info: os.stat_result) -> str | None:
    if target.is_symlink():
        return "is a symlink"
    if info.st_uid != os.getuid():
        return f"belongs to uid {info.st_uid}, not to this user (uid {os.getuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by others (mode {stat.filemode(info.st_mode)})"
    return None


def check_private(path: Path) -> None:
    """Raise UntrustedPayloadError unless ``path`` and its directory belong to this user alone."""
    for target, info in ((path.parent, path.parent.stat()), (path, path.lstat())):
        problem = _problem(target, info)
        if problem:
            raise UntrustedPayloadError(f"refusing to load {path}: {target} {problem}; a payload runs code when "
                                        f"loaded, so only you may write it (remove it and run the command again)")


def write_payload(path: Path, obj: Any) -> Path:
    """Pickle ``obj`` to ``path`` (mode 0600, written then renamed) in a private directory."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(cloudpickle.dumps(obj))
    os.replace(tmp, path)
    return path


def read_payload(path: Path) -> Any:
    """Unpickle ``path`` after :func:`check_private`."""
    check_private(path)
    return cloudpickle.loads(path.read_bytes())
