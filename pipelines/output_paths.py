"""Output paths: checked before any work, never outside their folder, temporary names per writer.

* ``check_output_path(path, overwrite, front_door_remedy)`` is what every task calls before it
  does any work: the folder exists or can be made and is writable (a temporary file is created
  there and removed), the name is valid (ends in .mp4, not too long for the filesystem
  including the hidden temporary names derived from it, encodable), the path is not a folder
  and not under an existing file.
* ``check_file_name(name, option)``: a name (``--name``) is a file name, never a path.
* ``temporary_path(path, kind)``: ``.<stem>.<pid>-<random>.<kind>`` beside ``path``, unique per
  writer, so two processes writing the same output never share a temporary file. The pid in the
  name lets ``remove_stale_temporaries`` recognise the leftovers of dead processes.

Every problem raises ``KinetographError`` with a message in the user's words.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import tempfile
import time
import unicodedata
from pathlib import Path

from .errors import KinetographError

# The temporary files a writer derives from an output name, by kind (see video_io.VideoWriter).
TEMPORARY_KINDS = ("partial.mp4", "muxing.mp4", "json.partial")
# A temporary name: "." + stem + "." + pid + "-" + 8 hex digits + "." + kind
_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d{1,10})-(?P<token>[0-9a-f]{8})\.(?P<kind>"
                        + "|".join(re.escape(kind) for kind in TEMPORARY_KINDS) + r")$")
# Temporaries of the first writer, without a pid: ".<stem>.partial.mp4" etc.
_LEGACY_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.(?P<kind>"
                               + "|".join(re.escape(kind) for kind in TEMPORARY_KINDS) + r")$")
# The longest temporary name's extra characters over the stem: "." + "." + pid + "-" + token + "." + kind
_TEMPORARY_OVERHEAD = 2 + 10 + 1 + 8 + 1 + max(len(kind) for kind in TEMPORARY_KINDS)
# Room kept for the "-N" a default name gets when it is taken (unique_output_path).
_NUMBER_ROOM = 6
STALE_AFTER_S = 60.0  # a dead process's temporary file is removed once it is this old
_DEFAULT_NAME_MAX = 255


def check_file_name(name, option: str = "--name") -> str:
    """``name`` if it is a plain file name (no folder, no ``..``), else a KinetographError."""
    if not isinstance(name, str):
        raise KinetographError(f"{option} must be text, got {type(name).__name__}.")
    path_like = "/" in name or "\\" in name or name in (".", "..") or (os.altsep is not None and os.altsep in name)
    if path_like or ".." in name:
        raise KinetographError(f"{option} is a file name, not a path (got {name!r}): use --out PATH to choose a "
                               "folder, and a name without '/', '\\' or '..'.")
    if not name.strip():
        raise KinetographError(f"{option} is empty: give a name such as 'fox', or leave {option} out.")
    bad = [char for char in name if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")]
    if bad:
        raise KinetographError(f"{option} {name!r} contains control or invisible characters "
                               f"({', '.join(repr(c) for c in dict.fromkeys(bad))}): use letters, digits, '-' and '_'.")
    _check_encodable(name, option)
    return name


def _check_encodable(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8 (os.fsdecode's surrogateescape)
        raise KinetographError(f"{what} {text.encode('utf-8', 'backslashreplace').decode('ascii', 'replace')} "
                               "is not valid UTF-8 text: rename it using UTF-8 characters only.") from None


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return _DEFAULT_NAME_MAX


def _existing_ancestor(folder: Path) -> Path:
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def check_output_name(path, remedy: str = "choose another --out") -> Path:
    """The checks of ``check_output_path`` that need no filesystem: not empty, valid UTF-8, no
    control characters, not a folder (a trailing '/'), a name before ``.mp4``. Jobs run it in
    their ``check``; returns the path (``~`` expanded)."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise KinetographError("The output path is empty: give --out a file name ending in .mp4, or leave --out "
                               "out for a default name.")
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    _check_encodable(text, "Output")
    if "\0" in text:
        raise KinetographError(f"Output {text!r} contains a NUL character: {remedy}.")
    if text.endswith(("/", os.sep)) or (os.altsep and text.endswith(os.altsep)):
        raise KinetographError(f"Output {text} names a folder: add a file name ending in .mp4, e.g. "
                               f"{text.rstrip('/' + os.sep)}/video.mp4.")
    path = Path(text).expanduser()
    name = path.name
    bad = [char for char in name if unicodedata.category(char) in ("Cc", "Zl", "Zp")]
    if bad:
        raise KinetographError(f"Output name {name!r} contains control characters: {remedy}.")
    if path.suffix.lower() != ".mp4":
        if name.lower() == ".mp4":
            raise KinetographError(f"Output {text} has no name before .mp4: give one, e.g. video.mp4.")
        stripped = name.strip()
        if stripped.lower().endswith(".mp4"):
            raise KinetographError(f"Output name {name!r} has spaces around it: remove them ({stripped!r}).")
        raise KinetographError(f"Output {text} must end in .mp4 (Kinetograph writes H.264 mp4): "
                               f"e.g. {path.with_suffix('.mp4').name if path.stem else 'video.mp4'}.")
    return path


def check_output_path(path, overwrite: bool = False, remedy: str = "choose another --out") -> Path:
    """``path`` (an output .mp4) checked before any work; its folder is created. Returns the path.

    Checks ``check_output_name``, then: not a folder, not under an existing file, the folder
    exists or can be made and a temporary file can be created in it, the name (and the hidden
    temporary names derived from it) fits the filesystem's name length. ``remedy``: what the
    front door offers ("choose another --out"). ``overwrite`` is accepted for symmetry; an
    existing file is the caller's rule (refuse, or pick a free name).
    """
    path = check_output_name(path, remedy)
    try:
        return _check_on_disk(path, remedy)
    except OSError as error:  # e.g. a folder on the way that may not be looked into
        raise KinetographError(f"Output {path} cannot be written ({_reason(error)}); {remedy}.") from None


def _check_on_disk(path: Path, remedy: str) -> Path:
    text, name = str(path), path.name
    if path.exists() and path.is_dir():
        raise KinetographError(f"Output {text} is a folder: give a file name inside it, e.g. {path / 'video.mp4'}.")
    folder = path.parent
    ancestor = _existing_ancestor(folder)
    if not ancestor.is_dir():
        raise KinetographError(f"Output {text} cannot be written: {ancestor} is a file, not a folder; "
                               f"{remedy}.")
    _check_name_length(name, ancestor)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise KinetographError(f"The output folder {folder} cannot be created ({_reason(error)}); {remedy}.") from None
    _check_writable(folder, remedy)
    if path.exists() and not path.is_file():
        raise KinetographError(f"Output {text} exists and is not a regular file; {remedy}.")
    return path


def _check_name_length(name: str, folder: Path) -> None:
    limit = _name_max(folder)
    stem = name[: -len(".mp4")]
    longest = len(os.fsencode(stem)) + _TEMPORARY_OVERHEAD + _NUMBER_ROOM
    if longest > limit:
        room = limit - _TEMPORARY_OVERHEAD - _NUMBER_ROOM
        raise KinetographError(f"Output name {name[:40]}... is too long for this filesystem ({len(os.fsencode(name))} "
                               f"bytes; names here may have at most {room} bytes before '.mp4', leaving room for "
                               "the temporary names used while writing): choose a shorter name.")


def _check_writable(folder: Path, remedy: str) -> None:
    try:
        handle, probe = tempfile.mkstemp(prefix=".kinetograph-write-test-", dir=folder)
    except OSError as error:
        raise KinetographError(f"The output folder {folder} is not writable ({_reason(error)}); {remedy}.") from None
    os.close(handle)
    try:
        os.unlink(probe)
    except OSError:
        pass


def _reason(error: OSError) -> str:
    if error.errno == errno.EROFS:
        return "read-only filesystem"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.ENOSPC:
        return "the disk is full"
    return error.strerror or str(error)


# ----------------------------------------------------------------------- temporaries
def temporary_path(path: Path, kind: str, token: str | None = None) -> Path:
    """``.<stem>.<pid>-<token>.<kind>`` beside ``path``; one ``token`` per writer."""
    if kind not in TEMPORARY_KINDS:
        raise ValueError(f"unknown temporary kind {kind!r}")
    token = token or secrets.token_hex(4)
    return path.parent / f".{path.stem}.{os.getpid()}-{token}.{kind}"


def new_token() -> str:
    return secrets.token_hex(4)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this machine); another user's process counts."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _temporaries(folder: Path, stem: str | None = None):
    """(path, pid or None for the first writer's names) of every writer temporary in ``folder``."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is not None:
            if stem is None or match["stem"] == stem:
                yield Path(entry.path), int(match["pid"])
            continue
        legacy = _LEGACY_TEMPORARY.match(entry.name)
        if legacy is not None and (stem is None or legacy["stem"] == stem):
            yield Path(entry.path), None


def busy_with(path: Path) -> bool:
    """Whether a live writer (a process that exists) is writing ``path`` now. The temporaries of
    dead processes, and the pid-less ones of the first writer, never block a name."""
    path = Path(path)
    return any(pid is not None and pid_alive(pid) for _, pid in _temporaries(path.parent, path.stem))


def remove_stale_temporaries(folder: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary files in ``folder`` left by writers that died: their pid is not alive
    (or they carry none, from the first writer) and they were last changed over ``older_than_s``
    ago (a minute: a writer on another machine sharing the folder keeps its files fresh).
    Returns what was removed."""
    removed = []
    now = time.time()
    for temporary, pid in _temporaries(Path(folder)):
        if pid is not None and (pid == os.getpid() or pid_alive(pid)):
            continue
        try:
            if now - temporary.stat().st_mtime < older_than_s:
                continue
            temporary.unlink()
            removed.append(temporary)
        except OSError:
            continue  # another process removed it first, or we may not: leave it
    return removed
