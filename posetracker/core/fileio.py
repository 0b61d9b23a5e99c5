"""Atomic file writes: a temporary file beside the target, then a rename.

A reader never sees a half-written file, an interrupted run leaves the old file (or none) and no
stray temporary file, and nothing is ever written into another folder (such as the input's).
Temporary names are ``.NAME.XXXXXXXX.tmp`` (``.NAME.XXXXXXXX.tmp.SUFFIX`` for streamed files, whose
encoders read the suffix): a run killed with ``kill -9`` leaves one, which the next run holding
that output's lock removes (:mod:`posetracker.core.outputs`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from posetracker.core.errors import InputError
from posetracker.core.paths import check_name

#: Bytes a temporary name adds to its output's (``.`` twice, two ``.XXXXXXXX.tmp``, a suffix).
TEMP_NAME_EXTRA = 40


def _umask() -> int:
    """The process's file-creation mask, read without changing it (``os.umask`` would set it,
    racing with other threads); 0o022 where ``/proc`` does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _make_folders(path: Path) -> list[Path]:
    """Make the missing folders above ``path``; the ones made, deepest first, so that a failed
    write removes them again (:func:`_remove_folders`) and leaves no empty folder behind."""
    made = []
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    return made


def _remove_folders(made: list[Path]) -> None:
    """Remove the folders :func:`_make_folders` made, deepest first, while they are empty."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            return


def write_error(path: str | Path, error: OSError) -> InputError:
    """The one-line error for an output that failed while being written (a full disk, a
    failing device, a vanished folder), naming the path: ``cannot write PATH: No space left on
    device``. The CLI reports it with exit status 2."""
    return InputError(f"cannot write {path}: {error.strerror or error}")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    The temporary file is removed if ``write`` raises (or is interrupted), so a failed write
    leaves neither a partial ``path`` nor a stray temporary file, and the file that was there
    before stays whole. An existing ``path`` that is not a regular file (``/dev/stdout``, a
    pipe, ``/dev/full``) is written directly: renaming over a device would replace it.

    Raises:
        InputError: the write failed (``ENOSPC``, ``EIO``, permissions): one line naming ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        try:
            write(path)
        except OSError as e:
            raise write_error(path, e) from None
        return
    made: list[Path] = []
    try:
        made = _make_folders(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        _remove_folders(made)
        raise write_error(path, e) from None
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file private (0600); the output gets the usual permissions
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        _remove_folders(made)
        raise write_error(path, e) from None
    except InputError as e:
        # a writer that itself writes atomically (to our temporary path) names that path: the
        # user gave ``path`` and never sees the temporary name
        Path(tmp).unlink(missing_ok=True)
        _remove_folders(made)
        raise InputError(str(e).replace(tmp, str(path))) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        _remove_folders(made)
        raise


class PendingFile:
    """A file written over a run under a temporary name beside ``path`` and renamed to it only
    when complete (a rendered video, a CSV table): a reader, or a run that failed or was
    killed, never leaves a partial file at ``path``.

    ``tmp`` is the path to write (it keeps ``path``'s suffix, which encoders read); call
    :meth:`commit` once it is closed without error, else :meth:`discard`.

    Raises:
        InputError: the temporary file cannot be made (one line naming ``path``).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file() and not self.path.is_dir():
            self.tmp = self.path  # a device or pipe (/dev/stdout): written directly, never renamed
            return
        self._made: list[Path] = []
        try:
            self._made = _make_folders(self.path)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                       suffix=".tmp" + self.path.suffix)
        except OSError as e:
            _remove_folders(self._made)
            raise write_error(self.path, e) from None
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        """Rename the finished temporary file to ``path`` (with the usual permissions)."""
        if self.tmp == self.path:
            return
        try:
            os.chmod(self.tmp, 0o666 & ~_umask())
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.discard()
            raise write_error(self.path, e) from None

    def discard(self) -> None:
        """Remove the temporary file; ``path`` keeps what it had (or stays absent)."""
        if self.tmp != self.path:
            self.tmp.unlink(missing_ok=True)
            _remove_folders(self._made)


def read_input_text(path: str | Path) -> str:
    """The whole of an input file as UTF-8 text (a leading byte-order mark dropped), for every
    reader of JSON, JSON lines and YAML.

    Opened without blocking, then read blocking: a named pipe (FIFO) that no program writes to
    reads as empty at once instead of hanging the run, while a pipe with a writer (``<(cmd)``,
    ``/dev/stdin``) is read to its end as usual.

    Raises:
        OSError: missing, a folder (``IsADirectoryError``), unreadable; UnicodeDecodeError:
            not UTF-8 text. Callers turn these into their one-line :class:`InputError`.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.set_blocking(fd, True)
    except OSError:
        os.close(fd)
        raise
    with open(fd, encoding="utf-8-sig") as f:  # a byte-order mark (Windows editors) is no text
        return f.read()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of the file at ``path``, read in ``chunk``-byte blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _exists(path: Path) -> bool:
    """``path.exists()``, false for a path the system cannot even look up (a name too long)."""
    try:
        return path.exists()
    except OSError:
        return False


def check_writable(path: str | Path | None, option: str = "") -> None:
    """Refuse an output path that cannot be written, before any work starts (models loading,
    files opened), so a refused run costs nothing and leaves nothing behind.

    1. ``None`` or ``""``: no output asked for, nothing to check. A name longer than the file
       system holds (with its temporary name's extra bytes) is refused.
    2. An existing directory is not a file path; an existing file must be writable.
    3. The nearest existing folder above the file (its own, or the one its missing folders would
       be made in) must be a folder in which a file can be created: probed with a temporary file,
       removed at once, since permission bits lie for root and for pseudo file systems (/proc).

    Raises:
        InputError: ``cannot write PATH (OPTION): reason``, with the path as the user gave it.
    """
    if not path:
        return
    check_name(path, option, spare=TEMP_NAME_EXTRA)  # room for the temporary name, too
    where = f" ({option})" if option else ""
    p = Path(path)
    folder = p.absolute().parent
    while not _exists(folder) and folder != folder.parent:
        folder = folder.parent
    if p.is_dir():
        raise InputError(f"cannot write {path}{where}: it is a directory")
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"cannot write {path}{where}: permission denied")
    if not folder.is_dir():
        raise InputError(f"cannot write {path}{where}: {folder} is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".posetracker-probe.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"cannot write {path}{where}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(tmp)
