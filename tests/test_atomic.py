"""annlib._atomic: saves are atomic, stale temporaries of dead writers are cleaned, errors name the target."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from annlib import _atomic
from annlib import datasets
from annlib import io as aio


def _temp_name(target, pid: int, host: str | None = None, suffix: str = "0123456789ab") -> str:
    """The documented name ``.<target>.annlib-tmp-<host>-<pid>-<random>``."""
    return f".{target.name}{_atomic.TEMP_MARKER}{host or _atomic._host_tag()}-{pid}-{suffix}"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid names no process now
    return child.pid


@pytest.fixture
def sleeping_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_temporary_name_is_beside_the_target_and_names_this_process(tmp_path):
    target = tmp_path / "index.annl"
    tmp = _atomic.temp_path(target)
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(f".index.annl{_atomic.TEMP_MARKER}{_atomic._host_tag()}-{os.getpid()}-")
    assert _atomic.temp_path(target) != tmp


def test_save_killed_mid_write_leaves_a_temporary_the_next_save_removes(tmp_path):
    target = tmp_path / "index.annl"
    aio.save_index_file(target, "old", {"v": 1}, {"x": np.arange(10)})
    # A child process that stops for good in the middle of writing the sections.
    script = textwrap.dedent(
        f"""
        import time
        import numpy as np
        from annlib import io as aio

        real = aio._write_chunks
        def stall(file, data):
            real(file, data[: len(data) // 2])
            file.flush()
            print("writing", flush=True)
            time.sleep(120)
        aio._write_chunks = stall
        aio.save_index_file({str(target)!r}, "new", {{}}, {{"y": np.ones(100_000, np.float32)}})
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    stale = [name for name in _names(tmp_path) if _atomic.TEMP_MARKER in name]
    assert len(stale) == 1 and f"-{child.pid}-" in stale[0]
    assert aio.load_index_file(target)[0] == "old", "the killed save must not touch the target"

    aio.save_index_file(target, "newer", {}, {"z": np.arange(3)})
    assert _names(tmp_path) == ["index.annl"]
    assert aio.load_index_file(target)[0] == "newer"


def test_stale_temporary_of_a_dead_pid_is_removed_by_the_next_dataset_write(tmp_path):
    target = tmp_path / "x.fvecs"
    (tmp_path / _temp_name(target, _dead_pid())).write_bytes(b"partial")
    datasets.write_fvecs(target, np.zeros((2, 3)))
    assert _names(tmp_path) == ["x.fvecs"]


def test_temporaries_of_live_writers_other_hosts_and_other_targets_are_left_alone(tmp_path, sleeping_child):
    target = tmp_path / "index.annl"
    keep = [
        _temp_name(target, sleeping_child),  # a live writer
        _temp_name(target, os.getppid()),  # another live process (the test runner's parent)
        _temp_name(target, _dead_pid(), host="00000000" if _atomic._host_tag() != "00000000" else "11111111"),
        _temp_name(tmp_path / "other.annl", _dead_pid()),  # another target
        f".index.annl{_atomic.TEMP_MARKER}not-a-pid",  # not a name this scheme writes
        "index.annl.tmp-0123456789abcdef",  # the old naming: never guessed at
    ]
    dead = _temp_name(target, _dead_pid())
    for name in [*keep, dead]:
        (tmp_path / name).write_bytes(b"x")
    aio.save_index_file(target, "kind", {}, {"x": np.arange(4)})
    assert _names(tmp_path) == sorted([*keep, "index.annl"])


def test_remove_stale_reports_what_it_removed(tmp_path):
    target = tmp_path / "data.hdf5"
    stale = tmp_path / _temp_name(target, _dead_pid())
    stale.write_bytes(b"x")
    assert _atomic.remove_stale(target) == [stale]
    assert _atomic.remove_stale(target) == []
    assert _atomic.remove_stale(tmp_path / "missing-dir" / "data.hdf5") == []


def test_failed_save_names_the_target_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "index.annl"
    aio.save_index_file(target, "old", {}, {"x": np.arange(10)})
    before = target.read_bytes()

    def disk_full(file, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(aio, "_write_chunks", disk_full)
    with pytest.raises(OSError, match="No space left on device") as info:
        aio.save_index_file(target, "new", {}, {"y": np.arange(100)})
    assert info.value.errno == 28
    assert info.value.filename == str(target)
    assert _atomic.TEMP_MARKER not in str(info.value)
    assert _names(tmp_path) == ["index.annl"]
    assert target.read_bytes() == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write a read-only directory")
def test_unwritable_directory_error_names_the_target(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        with pytest.raises(PermissionError) as info:
            aio.save_index_file(directory / "index.annl", "kind", {}, {})
    finally:
        directory.chmod(0o700)
    assert info.value.filename == str(directory / "index.annl")


def test_error_without_errno_is_reworded_to_name_the_target(tmp_path):
    target = tmp_path / "data.hdf5"
    with pytest.raises(OSError) as info, _atomic.atomic_path(target) as tmp:
        raise OSError(f"Unable to synchronously create file (name = '{tmp}')")  # how h5py words it
    assert str(target) in str(info.value)
    assert _atomic.TEMP_MARKER not in str(info.value)
    assert _names(tmp_path) == []


def test_interrupted_body_removes_the_temporary(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), _atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"new, partial")
        raise KeyboardInterrupt
    assert _names(tmp_path) == ["t.bin"]
    assert target.read_bytes() == b"old"


def test_new_file_gets_the_umask_mode(tmp_path):
    mask = os.umask(0o022)
    try:
        with _atomic.atomic_path(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"data")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644

