"""Atomic file writes: a temporary file beside the target, fsynced, then ``os.replace``-d into place.

Every file annlib writes (index files, datasets, downloads) goes through :func:`atomic_path`, so
a reader sees the old file or the complete new one, never a partial one.

Temporaries are named ``.<target name>.annlib-tmp-<host>-<pid>-<random>`` in the target's
directory, where ``<host>`` is 8 hex digits of a hash of this machine's host name and ``<pid>``
the writing process. A process killed mid-write leaves its temporary behind; the next write of
the same target (and :func:`remove_stale`, which the index loader may call) removes every such
temporary whose writer is gone: same host, pid no longer alive. Temporaries of live processes,
of other hosts (a shared network directory) and of other targets are never touched. A reused pid
keeps a stale temporary alive until the pid is free again, which errs on the safe side.

Errors name the target, never the temporary: an :class:`OSError` raised while writing is re-raised
with the same errno and ``filename`` set to the target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import re
import secrets
import socket
import zlib
from collections.abc import Iterator

__all__ = ["TEMP_MARKER", "atomic_path", "remove_stale", "temp_path"]

TEMP_MARKER = ".annlib-tmp-"
"""Part of every temporary's name, between the target's name and the writer's host and pid."""


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')):08x}"


def _split(target: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    final = pathlib.Path(target)
    directory = final.parent if str(final.parent) else pathlib.Path(".")
    return final, directory


def temp_path(target: str | os.PathLike) -> pathlib.Path:
    """A fresh temporary name for ``target``: ``.<name>.annlib-tmp-<host>-<pid>-<random>`` beside it."""
    final, directory = _split(target)
    return directory / f".{final.name}{TEMP_MARKER}{_host_tag()}-{os.getpid()}-{secrets.token_hex(6)}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid this scheme writes; leave the file alone
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return True
    return True


def remove_stale(target: str | os.PathLike) -> list[pathlib.Path]:
    """Remove temporaries of ``target`` left by dead writers on this host; returns what was removed.

    Never raises for a file it cannot inspect or remove (another process may be cleaning up too).
    """
    final, directory = _split(target)
    pattern = re.compile(re.escape(f".{final.name}{TEMP_MARKER}") + r"([0-9a-f]{8})-([0-9]+)-[0-9a-f]+")
    host = _host_tag()
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match.group(1) != host or _pid_alive(int(match.group(2))):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(pathlib.Path(entry.path))
    return removed


def _fsync_file(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: pathlib.Path) -> None:
    # Makes the rename durable; directories cannot be opened this way on Windows.
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _naming_target(exc: OSError, final: pathlib.Path, tmp: pathlib.Path | None = None) -> OSError:
    """The same error with the target as its filename (OSError picks the subclass from errno)."""
    if exc.errno is None:  # e.g. h5py's errors: only a message, which may name the temporary
        text = str(exc).replace(str(tmp), str(final)) if tmp is not None else str(exc)
        return OSError(f"cannot write {final}: {text}")
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(final))


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a new, empty temporary path beside ``target``; on success fsync it and move it into place.

    Stale temporaries of ``target`` (see the module docstring) are removed first. The body writes
    the temporary by path (it may reopen or truncate it). On any exception the temporary is
    removed and ``target`` is left as it was; an :class:`OSError` is re-raised naming ``target``.

    Raises
    ------
    IsADirectoryError
        ``target`` is a directory.
    FileNotFoundError
        The target's directory does not exist.
    OSError
        Creating, writing, syncing or renaming failed (the message names ``target``).
    """
    final, directory = _split(target)
    if final.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file path", str(final))
    if not directory.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"directory {directory} does not exist", str(final))
    remove_stale(final)
    tmp = temp_path(final)
    try:
        # O_EXCL: never reuse a name; 0o666 lets the umask decide the mode, as for any new file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise _naming_target(exc, final) from exc
    os.close(fd)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _naming_target(exc, final, tmp) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(directory)


def _unlink_quietly(path: pathlib.Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
