"""Atomic file writing: every file jaxmsk writes goes to a temporary file in the destination
folder and is renamed into place, so a crash never leaves a half-written file and nothing a
user saved is replaced unless the caller asked (`overwrite=True`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path, *, overwrite: bool, what: str = "") -> str:
    """`path` as a string; raise `FileExistsError` if it exists and `overwrite` is False."""
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        prefix = f"{what}: " if what else ""
        raise FileExistsError(f"{prefix}{path} exists; pass overwrite=True to replace it, or "
                              "choose another path.")
    return path


@contextlib.contextmanager
def atomic_path(path, *, overwrite: bool = False, what: str = "") -> Iterator[str]:
    """Yield a temporary path next to `path`; on success rename it onto `path`.

    The temporary file has the same suffix as `path` (so writers that pick a format by
    suffix, such as OpenSim's adapters, behave the same) and gets a normal file's mode
    (0666 & ~umask). If the body raises, the temporary file is removed and `path` is left
    as it was. If `path` appears while writing and `overwrite` is False, nothing is replaced.
    """
    path = check_writable(path, overwrite=overwrite, what=what)
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    suffix = "".join(os.path.splitext(base)[1:]) or ".tmp"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{what + ': ' if what else ''}{path} appeared while writing; "
                                  "nothing was replaced.")
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path, text: str, *, overwrite: bool = False, what: str = "") -> str:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    with atomic_path(path, overwrite=overwrite, what=what) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    return os.fspath(path)


def atomic_write_bytes(path, data: bytes, *, overwrite: bool = False, what: str = "") -> str:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path, overwrite=overwrite, what=what) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return os.fspath(path)


def swap_in_folder(tmp: str, path: str, *, overwrite: bool, what: str) -> None:
    """Rename the finished folder `tmp` onto `path`.

    An empty folder at `path` is simply replaced. Anything else there is replaced only with
    `overwrite=True`: it is first renamed aside, the new folder renamed into place, then the
    old one deleted; if the second rename fails the old folder is put back, so `path` is
    never left half-written or missing.
    """
    import shutil

    old = None
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
            os.rmdir(path)
        elif not overwrite:
            raise FileExistsError(f"{what}: {path} appeared while writing; nothing was replaced.")
        else:
            parent, base = os.path.split(os.path.abspath(path))
            old = tempfile.mkdtemp(dir=parent, prefix=f".{base}.old-")
            os.rmdir(old)  # keep the unique name; the old folder is renamed onto it
            os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        if old is not None:
            os.rename(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
