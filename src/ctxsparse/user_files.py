"""Reading a file the user named (a task file, a transcript, a calibration text, an @file prompt).

Every failure says which option and file it was and what to change: missing, a directory, unreadable,
binary, or not UTF-8 (with the offset of the first bad byte).
"""

from __future__ import annotations

import os
from pathlib import Path

BINARY_PROBE = 8192  # a NUL byte in the first 8 KiB marks a binary file


class UserFileError(ValueError):
    """A file given by the user cannot be read as text; the message names it and the fix."""


def read_user_text(path: str | os.PathLike, what: str = "file", expect: str = "a UTF-8 text file") -> str:
    """The text of path (UTF-8, a byte-order mark allowed), or UserFileError saying what is wrong.

    what names the input in messages (e.g. '--text', 'task file'); expect says what it should be.
    """
    path = Path(path)
    if not path.exists():
        raise UserFileError(f"{what} {path} does not exist; give the path of {expect}.")
    if path.is_dir():
        raise UserFileError(f"{what} {path} is a directory; give the path of {expect} inside it.")
    try:
        data = path.read_bytes()
    except PermissionError:
        raise UserFileError(f"{what} {path} cannot be read (permission denied); chmod u+r {path}.") from None
    except OSError as err:
        raise UserFileError(f"{what} {path} cannot be read ({err.strerror}); give {expect}.") from None
    if b"\x00" in data[:BINARY_PROBE]:
        raise UserFileError(f"{what} {path} is a binary file, not text; give {expect}.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserFileError(
            f"{what} {path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); convert it "
            f"to UTF-8 (e.g. iconv -f latin1 -t utf-8 {path} > fixed) and give {expect}."
        ) from None


def check_output_file(path: str | os.PathLike, what: str) -> None:
    """Refuse, before any work, an output path that is a directory or lies in a folder that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise UserFileError(f"{what} {path} is a directory; give a file name such as {path / 'out.json'}.")
    folder = path.parent if str(path.parent) else Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UserFileError(f"{what} {path} cannot be written: {folder} is not a writable folder; give another path.")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserFileError(f"{what} {path} is read-only; make it writable (chmod u+w {path}) or give another path.")
