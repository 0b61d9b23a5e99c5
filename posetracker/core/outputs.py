"""The output policy of every command: which paths a run may write, and one run per output.

Every command calls :func:`claim_outputs` (or :func:`check_outputs` plus :class:`OutputClaim`)
with its outputs and its inputs before any model loads, and holds the claim for the run:

1. Each output is resolved (``..``, symlinks; an existing file also by device and inode, so a
   hard link is caught) and refused, with one line naming the option and the path as the user
   gave it, if it is an input of the same run, another output of the run, or not writable
   (:func:`posetracker.core.fileio.check_writable`). A folder given as an input stands for every
   file under it; callers that know the exact files a folder or glob yields pass those instead,
   so that an output may sit inside an input image folder as long as it is not one of its inputs.
   Nothing is created by a refused run.
2. Each output is then locked for the run: a second run that targets it is refused at once,
   naming the first run's pid (:class:`OutputClaim`).
3. Temporary files that a killed run left beside an output (``.NAME.XXXXXXXX.tmp*``, see
   :mod:`posetracker.core.fileio`) are removed by the next run that holds its lock: only the lock's
   holder writes them, so any found then are stale.

The files themselves are written whole or not at all by :mod:`posetracker.core.fileio`.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from posetracker.core.errors import InputError
from posetracker.core.fileio import check_writable

#: The policy in one sentence: the epilog of every writing command's ``--help`` and the docs.
POLICY = ("Outputs: every output path is checked before any model loads and refused (exit 2, one "
          "line) if it is an input of the run, another output of the run, not writable, or being "
          "written by another posetracker run (its pid is named); every file is written under a "
          "temporary name beside it and renamed only when complete, so an output is either whole "
          "or absent, and the .jsonl stream keeps every finished frame.")

PathLike = str | os.PathLike


def _identity(path: Path) -> tuple:
    """What makes two paths the same file: ``(device, inode)`` of an existing file (symlinks,
    ``..`` and hard links resolve to it), else the resolved absolute path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def _input_identities(inputs: Iterable[PathLike | None],
                      folder_suffixes: Collection[str] | None) -> dict[tuple, str]:
    """Identity -> the input as given, for every input file; a folder contributes every regular
    file under it (with one of ``folder_suffixes``, when given: the files the run reads from it;
    a dataset folder of a few thousand frames takes milliseconds)."""
    seen: dict[tuple, str] = {}
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)) or str(item) == "":
            continue
        p = Path(item)
        try:
            is_dir, exists = p.is_dir(), p.exists()
        except OSError:  # a name the system cannot look up is no file the run reads
            continue
        if is_dir:
            for top, _, files in os.walk(p):
                for f in files:
                    q = Path(top) / f
                    if folder_suffixes is None or q.suffix.lower() in folder_suffixes:
                        seen.setdefault(_identity(q), str(q))
        elif exists:
            seen.setdefault(_identity(p), str(item))
            seen.setdefault(("path", os.path.realpath(p)), str(item))
    return seen


def source_inputs(source: object) -> tuple[PathLike, ...]:
    """The files an opened frame source (``posetracker.io.sources.FrameSource``) reads: the images
    of a folder, glob or single image, the video file, nothing for a webcam."""
    paths = tuple(getattr(source, "paths", ()) or ())
    if paths:
        return paths
    return (source.spec,) if getattr(source, "kind", "") == "video" else ()


def check_outputs(outputs: Mapping[str, PathLike | None],
                  inputs: Iterable[PathLike | None] = (), *,
                  folder_suffixes: Collection[str] | None = None) -> None:
    """Refuse the run's outputs that would destroy an input, collide, or cannot be written.

    Args:
        outputs: Option (as ``--help`` names it, e.g. ``"-o"``) -> output path; ``None``/empty
            entries are skipped (not asked for).
        inputs: Every file the run reads (input files, config files, the files of an input folder
            or glob); a folder stands for every file under it.
        folder_suffixes: The suffixes (lower case, with the dot) of the files the run reads from
            an input folder (``None``: every file); an output in an input folder with another
            suffix is no input.

    Raises:
        InputError: one line, ``OUTPUT (OPTION) is also the input INPUT``, ``... is also the
            OTHER output`` or ``cannot write OUTPUT (OPTION): reason``.
    """
    given = {opt: Path(p) for opt, p in outputs.items() if p is not None and str(p) != ""}
    for opt, p in outputs.items():  # Path() drops a trailing "/": the user meant a folder
        if p is not None and str(p).endswith(os.sep):
            raise InputError(f"cannot write {p} ({opt}): a file path is expected, not a folder "
                             "(it ends in /)")
    ins = _input_identities(inputs, folder_suffixes)
    claimed: dict[tuple, str] = {}
    for opt, path in given.items():
        keys = {_identity(path), ("path", os.path.realpath(path))}
        for k in keys:
            if k in ins:
                raise InputError(f"{path} ({opt}) is also the input {ins[k]}: it would be "
                                 "overwritten; choose another output path")
        for k in keys:
            if k in claimed:
                raise InputError(f"{path} ({opt}) is also the {claimed[k]} output")
        for k in keys:
            claimed[k] = opt
        check_writable(path, opt)


def _lock_dir() -> Path:
    """A folder private to this user for the lock files: ``$XDG_RUNTIME_DIR/posetracker-locks``,
    else ``<tmp>/posetracker-locks-<uid>``; never the user's output folder."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "posetracker-locks" if runtime and os.path.isdir(runtime) else \
        Path(tempfile.gettempdir()) / f"posetracker-locks-{os.getuid()}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot make the lock folder {base}: {e.strerror or e}") from None
    if base.stat().st_uid != os.getuid():
        raise InputError(f"the lock folder {base} belongs to another user")
    return base


def _stale_temps(path: Path) -> list[Path]:
    """The temporary files a killed run left beside ``path``: the names ``fileio`` gives them,
    ``.NAME.XXXXXXXX.tmp[.SUFFIX]``, and that of a writer that writes its own temporary path
    atomically, ``..NAME.XXXXXXXX.tmp.YYYYYYYY.tmp``."""
    pattern = re.compile(rf"^\.\.?{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.tmp"
                         rf"(\.[A-Za-z0-9_]{{8}}\.tmp)?(\.[^.]*)?$")
    prefix = "." + path.name
    try:
        # names compared as strings before any Path is made: an output folder such as /tmp can
        # hold tens of thousands of entries, and this runs at every claim
        with os.scandir(path.parent) as entries:
            return [Path(e.path) for e in entries if e.name.startswith((prefix, "." + prefix))
                    and pattern.match(e.name) and e.is_file()]
    except OSError:
        return []


class OutputClaim:
    """Advisory locks (``fcntl.flock``) on a run's outputs, held until :meth:`release`.

    Design: one lock file per output, in a per-user folder (:func:`_lock_dir`), named by the
    SHA-256 of the output's resolved path and holding the owner's pid. ``flock`` locks belong to
    the open file, so the kernel drops them when the process ends in any way, ``kill -9``
    included; a second run's non-blocking ``flock`` fails at once and reads the pid. The file is
    unlinked on release (while still locked); a run that opened the old file before the unlink
    sees that its locked file is no longer the one at the name and opens again, so two runs can
    never both hold one output. A killed run's lock file stays in the lock folder (not in the
    user's), unlocked, and is reused. Locks are per open file, so a run's own worker processes
    lock only what their parent does not (``track-dataset``: the parent holds the summary, each
    worker its sequence's files).
    """

    def __init__(self) -> None:
        self._held: list[tuple[int, Path]] = []

    def acquire(self, outputs: Mapping[str, PathLike | None]) -> OutputClaim:
        """Lock every output (sorted, so two runs never wait on each other: a conflict is
        refused, not waited for); on a conflict, release what was taken and raise.

        Raises:
            InputError: ``OUTPUT (OPTION) is being written by another posetracker run (pid N)``.
        """
        wanted = sorted((os.path.realpath(p), opt, str(p)) for opt, p in outputs.items()
                        if p is not None and str(p) != "")
        try:
            for real, opt, shown in wanted:
                self._lock(Path(real), opt, shown)
        except BaseException:
            self.release()
            raise
        for real, _, _ in wanted:
            for stale in _stale_temps(Path(real)):
                stale.unlink(missing_ok=True)
        return self

    def _lock(self, real: Path, opt: str, shown: str) -> None:
        name = hashlib.sha256(os.fsencode(real)).hexdigest()[:32] + ".lock"
        lock = _lock_dir() / name
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise InputError(f"{shown} ({opt}) is being written by another posetracker run "
                                 f"(pid {pid}); wait for it or choose another output") from None
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and unlinked between our open and our lock: try again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode() + os.fsencode(real) + b"\n")  # any name
            self._held.append((fd, lock))
            return

    def release(self) -> None:
        """Unlink and unlock every lock taken (also safe to call twice)."""
        while self._held:
            fd, lock = self._held.pop()
            try:
                lock.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    """The pid the holder wrote (it writes just after locking: wait a moment for it)."""
    for _ in range(20):
        data = os.pread(fd, 64, 0).split(b"\n", 1)[0].strip()
        if data.isdigit():
            return data.decode()
        time.sleep(0.01)
    return "unknown"


def claim_outputs(outputs: Mapping[str, PathLike | None],
                  inputs: Iterable[PathLike | None] = (), *,
                  folder_suffixes: Collection[str] | None = None) -> OutputClaim:
    """:func:`check_outputs`, then lock every output for the run; use as ``with claim_outputs(...)``
    (or call ``release()``); the locks also go when the process ends, however it ends."""
    check_outputs(outputs, inputs, folder_suffixes=folder_suffixes)
    return OutputClaim().acquire(outputs)


def claiming(outputs: Mapping[str, str], inputs: Iterable[str] = (), *,
             folder_suffixes: Collection[str] | None = None
             ) -> Callable[[Callable[[Any], int]], Callable[[Any], int]]:
    """A command's ``run(args)`` run under :func:`claim_outputs`, its paths read from ``args``.

    Args:
        outputs: Option as ``--help`` names it -> the attribute of ``args`` holding the path.
        inputs: Attributes of ``args`` holding an input path or a list of them (missing or
            ``None``: none).
        folder_suffixes: As :func:`check_outputs`.
    """

    def wrap(run: Callable[[Any], int]) -> Callable[[Any], int]:
        @functools.wraps(run)
        def claimed(args: Any) -> int:
            given = [getattr(args, dest, None) for dest in inputs]
            files = [f for g in given for f in (g if isinstance(g, (list, tuple)) else [g])]
            with claim_outputs({opt: getattr(args, dest, None) for opt, dest in outputs.items()},
                               files, folder_suffixes=folder_suffixes):
                return run(args)

        return claimed

    return wrap
