"""File names of any shape: shown on one line, checked for length, handed safely to OpenCV.

A POSIX file name is bytes. Python gives names that are not valid UTF-8 to us as ``str`` with
"surrogate escapes" (``b"\\xff"`` -> ``"\\udcff"``); ``open()`` takes them back unchanged, but
OpenCV's Python binding crashes the process (segmentation fault) on such a string, and a name
with a newline would split a one-line error message in two. This module is the one place that
knows this:

- :func:`printable`: a name (or a message holding one) as one line of plain text;
- :func:`check_name`: refuse a name the file system cannot hold (a part over ``NAME_MAX`` bytes,
  255 on common Linux file systems) with one line, before any work starts;
- :func:`opencv_path`: a name OpenCV can take for any file: the name itself when it is valid
  UTF-8, else an ASCII-named symbolic link to the file in a private temporary folder (never in
  the file's own folder), removed when the ``with`` block ends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from posetracker.core.errors import InputError


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (no surrogate escapes of undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: object) -> str:
    """``text`` as one line of valid text: undecodable bytes of a file name as ``\\xNN`` and control
    characters (newline, tab, escape, ...) as Python escapes, the rest unchanged."""
    s = str(text)
    if is_utf8(s) and s.isprintable():
        return s
    out = []
    for ch in s:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a surrogate escape: the original byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch if is_utf8(ch) else f"\\u{code:04x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes (255 when unknown)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def check_name(path: str | Path, option: str = "", *, spare: int = 0) -> None:
    """Refuse ``path`` when a part of it is longer than its file system allows.

    Args:
        path: The name as the user gave it.
        option: The option that named it, for the message (``"-o"``).
        spare: Bytes the last part must leave free (an output's temporary name is longer).

    Raises:
        InputError: ``PATH (OPTION): file name too long (N bytes; at most M here)``.
    """
    p = Path(path)
    limit = _name_max(p.absolute().parent)
    where = f" ({option})" if option else ""
    parts = p.parts
    for i, part in enumerate(parts):
        room = limit - (spare if i == len(parts) - 1 else 0)
        n = len(os.fsencode(part))
        if n > room:
            raise InputError(f"{printable(path)}{where}: file name too long ({n} bytes; at most "
                             f"{room} here)")


@contextmanager
def opencv_path(path: str | Path) -> Iterator[str]:
    """A name for ``path`` that OpenCV (``VideoCapture``, ``VideoWriter``) can take.

    Valid UTF-8 names are given as they are. For any other name, a symbolic link to the absolute
    path is made in a new private temporary folder, with the same suffix (OpenCV picks the
    container by it), and removed with its folder when the block ends; OpenCV opens the file
    through the link, so reading and writing reach the user's file.
    """
    text = str(path)
    if is_utf8(text):
        yield text
        return
    suffix = Path(text).suffix
    suffix = suffix if is_utf8(suffix) and suffix.isprintable() else ""
    folder = tempfile.mkdtemp(prefix="posetracker-name.")
    link = os.path.join(folder, "file" + suffix)
    try:
        os.symlink(os.fsencode(os.path.abspath(text)), link)
        yield link
    finally:
        if os.path.lexists(link):
            os.unlink(link)
        os.rmdir(folder)


__all__ = ["check_name", "is_utf8", "opencv_path", "printable"]
