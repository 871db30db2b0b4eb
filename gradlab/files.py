"""Every file gradlab writes goes through here: a temporary file created exclusively in the target's
folder, then ``os.replace`` onto the name. A name that is a symlink (planted in a folder someone passed
around) is refused, never written through; a full disk is one clear error that names the folder.

``os.replace`` swaps the directory entry itself, so even a symlink that appears between the check and
the rename is replaced, not followed: nothing outside the folder is ever written.
"""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

from .config import ConfigError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the mode a plain open() would give


class NoSpace(ConfigError):
    """The disk (or quota) filled up while writing under a folder."""


def no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def no_space_error(folder: str | Path) -> NoSpace:
    return NoSpace(f"no space left on device under {folder}; free some space (or choose another log.out) "
                   "and run again: the files written so far are kept.")


def refuse_symlinks(folder: str | Path, names: tuple[str, ...] | list[str]) -> None:
    """ConfigError when any of ``names`` in ``folder`` is a symlink (outputs are never written through one).

    The folder itself is the caller's to vouch for: a folder the user names (``runs/latest``, a link) is
    where they asked the output to go; a folder *inside* one (a sweep's run folder) is one of ``names``."""
    folder = Path(folder)
    linked = [n for n in names if (folder / n).is_symlink()]
    if linked:
        raise ConfigError(f"{folder}: {', '.join(linked)} {'is a symbolic link' if len(linked) == 1 else 'are symbolic links'}"
                          f" where gradlab writes its output; remove {'it' if len(linked) == 1 else 'them'} "
                          "(gradlab never writes through a link).")


@contextmanager
def atomic(path: str | Path, mode: str = "w", **kw) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one step.

    ``mode`` is "w" (text, utf-8 unless ``encoding`` is given) or "wb". On any error the temporary
    file is removed and ``path`` is left as it was; a full disk raises ``NoSpace``.
    """
    path = Path(path)
    refuse_symlinks(path.parent, [path.name])
    if "b" not in mode:
        kw.setdefault("encoding", "utf-8")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL, mode 0600
    except OSError as exc:
        if no_space(exc):
            raise no_space_error(path.parent) from None
        raise
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        with _quiet():
            os.unlink(tmp)
        if no_space(exc):
            raise no_space_error(path.parent) from None
        raise


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """``path`` holds ``data`` (text or bytes), written via a temporary file and ``os.replace``."""
    with atomic(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def save_atomic(path: str | Path, save: Callable[[IO], None]) -> None:
    """``save(file)`` writes into a binary temporary file that then replaces ``path`` (savefig, np.savez)."""
    with atomic(path, "wb") as f:
        save(f)


@contextmanager
def _quiet() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


def fresh_dir(base: Path) -> Path:
    """Make and return ``base``, or ``base-2``, ``base-3``, ... (the first that does not exist yet): a folder of
    this call's own, never one that another run or process made in the same second."""
    path, k = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            k += 1
            path = Path(f"{base}-{k}")
