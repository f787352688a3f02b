"""Every CLI command given bad input: a non-zero exit, one line of output, no traceback; and every
``--json`` output is strict JSON (RFC 8259: no NaN, Infinity or -Infinity)."""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

import annlib
import annlib.io
from annlib import datasets
from annlib.cli import main


def _reject_constant(name: str):
    raise ValueError(f"not strict JSON: {name}")


def strict_loads(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as strict parsers (JavaScript, Go, jq) do."""
    return json.loads(text, parse_constant=_reject_constant)


def test_strict_loads_rejects_what_python_json_writes_for_infinity():
    assert strict_loads('{"d": null}') == {"d": None}
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match="not strict JSON"):
            strict_loads(f'{{"d": [1.0, {constant}]}}')


def _write_raw_index(path, header: bytes) -> None:
    """An index file with ``header`` as its JSON and valid checksums (no sections), per annlib/io.py's layout."""
    preamble = struct.pack("<4sIQ", b"ANNL", 1, len(header))
    header_crc = zlib.crc32(header, zlib.crc32(preamble))
    body = preamble + header + struct.pack("<I", header_crc)
    total = len(body) + 16
    file_crc = zlib.crc32(struct.pack("<I", header_crc))
    path.write_bytes(body + struct.pack("<QI4s", total, file_crc, b"LNNA"))


def _raw_header(config: str, kind: str = '"tree_ah"') -> bytes:
    return f'{{"kind":{kind},"annlib_version":"0.1.0","config":{config},"sections":[]}}'.encode()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small tree-AH index, queries for it, and one bad file of each sort."""
    root = tmp_path_factory.mktemp("cli-errors")
    rng = np.random.default_rng(12)
    data = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((4, 16)).astype(np.float32)
    paths = {name: root / name for name in ("data.npy", "q.npy", "q0.npy", "q1d.npy", "q8.npy", "empty.npy", "notes.txt")}
    np.save(paths["data.npy"], data)
    np.save(paths["q.npy"], queries)
    np.save(paths["q0.npy"], np.zeros((0, 16), np.float32))
    np.save(paths["q1d.npy"], np.zeros(16, np.float32))
    np.save(paths["q8.npy"], queries[:, :8])
    paths["empty.npy"].write_bytes(b"")
    paths["notes.txt"].write_text("hello")
    # No reorder data and one partition probed: most of the k=300 slots of a query stay empty.
    index = annlib.TreeAhIndex(data, "dot", num_leaves=5, num_leaves_to_search=1, reorder=0)
    paths["index"] = root / "small.annl"
    index.save(paths["index"])
    paths["truncated"] = root / "truncated.annl"
    paths["truncated"].write_bytes(paths["index"].read_bytes()[:200])
    real_config = annlib.io.read_header(paths["index"])["config"]
    malformed = {
        "config-int": _raw_header('{"index":5}'),
        "config-list": _raw_header('{"index":{"tree":[]},"n":3,"dim":2}'),
        "n-overflow": _raw_header(json.dumps({**real_config, "n": 0}).replace('"n": 0', '"n": 1e999')),
        "deep": _raw_header("[" * 100_000 + "]" * 100_000),
        "kind-int": _raw_header("{}", kind="5"),
        "kind-unknown": _raw_header("{}", kind='"martian"'),
        "not-json": b"{not json",
    }
    for name, header in malformed.items():
        paths[name] = root / f"{name}.annl"
        _write_raw_index(paths[name], header)
    paths["root"] = root
    return paths


MALFORMED = ["config-int", "config-list", "n-overflow", "deep", "kind-int", "kind-unknown", "not-json", "truncated"]


def _bad_cases():
    """(id, argv template, expected exit status); {name} is replaced by the fixture's path."""
    cases = []
    for name in MALFORMED + ["empty.npy", "notes.txt"]:
        cases += [
            (f"info-{name}", ["info", f"{{{name}}}"], 1),
            (f"search-{name}", ["search", f"{{{name}}}", "{q.npy}"], 1),
            (f"tune-{name}", ["tune", f"{{{name}}}"], 1),
        ]
    for name in ("empty.npy", "q0.npy", "q1d.npy", "q8.npy", "notes.txt", "missing.npy"):
        cases += [
            (f"search-queries-{name}", ["search", "{index}", f"{{{name}}}"], 1),
            (f"tune-queries-{name}", ["tune", "{index}", f"{{{name}}}"], 1),
        ]
    for name in ("empty.npy", "q1d.npy", "notes.txt", "missing.npy"):
        cases.append((f"datasets-show-{name}", ["datasets", "show", f"{{{name}}}"], 1))
    for name in ("empty.npy", "q0.npy", "q1d.npy", "notes.txt", "missing.npy"):
        cases += [
            (f"build-{name}", ["build", f"{{{name}}}", "--metric", "dot", "--out", "{root}/x.annl"], 1),
            (f"ground-truth-{name}", ["datasets", "ground-truth", f"{{{name}}}"], 1),
            (f"demo-{name}", ["demo", "--dataset", f"{{{name}}}"], 1),
            (f"bench-{name}", ["bench", "--dataset", f"{{{name}}}", "--out", "{root}/bench"], 1),
        ]
    big = str(2**64)
    cases += [
        ("build-no-metric", ["build", "{data.npy}", "--out", "{root}/x.annl"], 2),
        ("build-too-many-leaves", ["build", "{data.npy}", "--metric", "dot", "--num-leaves", "5000", "--out", "{root}/x.annl"], 1),
        ("build-huge-leaves", ["build", "{data.npy}", "--metric", "dot", "--num-leaves", big, "--out", "{root}/x.annl"], 2),
        ("build-huge-seed", ["build", "{data.npy}", "--metric", "dot", "--seed", big, "--out", "{root}/x.annl"], 2),
        ("build-huge-threads", ["build", "{data.npy}", "--metric", "dot", "--threads", big, "--out", "{root}/x.annl"], 2),
        ("build-huge-dims-per-block", ["build", "{data.npy}", "--metric", "dot", "--dims-per-block", big, "--out", "{root}/x.annl"], 2),
        ("build-huge-k", ["build", "{data.npy}", "--metric", "dot", "-k", big, "--out", "{root}/x.annl"], 2),
        ("build-out-missing-dir", ["build", "{data.npy}", "--metric", "dot", "--out", "{root}/no/such/dir/x.annl"], 2),
        ("build-out-is-dir", ["build", "{data.npy}", "--metric", "dot", "--out", "{root}"], 2),
        ("search-k-zero", ["search", "{index}", "{q.npy}", "-k", "0"], 2),
        ("search-k-text", ["search", "{index}", "{q.npy}", "-k", "many"], 2),
        ("search-huge-leaves", ["search", "{index}", "{q.npy}", "--leaves-to-search", big], 2),
        ("search-too-many-leaves", ["search", "{index}", "{q.npy}", "--leaves-to-search", "6"], 1),
        ("search-reorder-without-data", ["search", "{index}", "{q.npy}", "--reorder", "10"], 1),
        ("search-huge-threads", ["search", "{index}", "{q.npy}", "--threads", big], 2),
        ("search-out-suffix", ["search", "{index}", "{q.npy}", "--out", "{root}/ids.txt"], 2),
        ("search-out-missing-dir", ["search", "{index}", "{q.npy}", "--out", "{root}/no/such/ids.npy"], 2),
        ("search-missing-index", ["search", "{root}/none.annl", "{q.npy}"], 2),
        ("tune-target-above-one", ["tune", "{index}", "--target-recall", "1.5"], 2),
        ("tune-tolerance-too-wide", ["tune", "{index}", "--recall-tolerance", "0.5"], 2),
        ("build-tolerance-negative", ["build", "{data.npy}", "--metric", "dot", "--recall-tolerance", "-0.1", "--out", "{root}/x.annl"], 2),
        ("tune-out-missing-dir", ["tune", "{index}", "--out", "{root}/no/such/t.annl"], 2),
        ("info-missing", ["info", "{root}/none.annl"], 2),
        ("ground-truth-k-too-big", ["datasets", "ground-truth", "{data.npy}", "-k", big], 2),
        ("datasets-unknown-name", ["datasets", "show", "no-such-dataset"], 1),
        ("download-unknown-name", ["datasets", "download", "no-such-dataset", "--dir", "{root}/dl"], 1),
        ("bench-unknown-algorithm", ["bench", "--algorithms", "annlib,nope"], 2),
        ("bench-huge-k", ["bench", "--algorithms", "annlib", "-k", big, "--out", "{root}/bench"], 1),
        ("unknown-command", ["frobnicate"], 2),
        ("unknown-option", ["info", "--frobnicate"], 2),
        ("missing-argument", ["search"], 2),
    ]
    return cases


def _fill(template: list[str], files) -> list[str]:
    names = {key: str(value) for key, value in files.items()}
    names["missing.npy"] = str(files["root"] / "missing.npy")
    return [re.sub(r"\{([^{}]+)\}", lambda m: names[m.group(1)], arg) for arg in template]


@pytest.mark.parametrize(("argv", "status"), [pytest.param(a, s, id=i) for i, a, s in _bad_cases()])
def test_bad_input_is_one_line_and_no_traceback(files, argv, status):
    result = CliRunner().invoke(main, _fill(argv, files))
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == status, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no exception escaped the command
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    assert result.stdout == "", "errors go to stderr"
    assert "Traceback" not in result.output
    assert "ANNLIB_DEBUG" not in result.output, "every bad input is an error the CLI knows, not an unexpected one"


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_index_error_names_the_file(files, name):
    result = CliRunner().invoke(main, ["info", str(files[name])])
    assert result.exit_code == 1
    assert str(files[name]) in result.output


def test_empty_npy_says_so(files):
    result = CliRunner().invoke(main, ["search", str(files["index"]), str(files["empty.npy"])])
    assert result.output.strip() == f"Error: {files['empty.npy']}: the file is empty or truncated"


def test_usage_error_keeps_the_help_hint(files):
    result = CliRunner().invoke(main, ["search", str(files["index"]), str(files["q.npy"]), "-k", "0"])
    assert "Invalid value for '-k'" in result.output and "--help" in result.output


def test_save_failure_names_the_target_not_a_temporary(files, monkeypatch):
    def full_disk(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", f"{path}.tmp-0123456789abcdef")

    monkeypatch.setattr(annlib.io, "save_index_file", full_disk)
    out = files["root"] / "full.annl"
    result = CliRunner().invoke(main, ["build", str(files["data.npy"]), "--metric", "dot", "--num-leaves", "5", "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: cannot write {out}: No space left on device"
    assert not out.exists()


def test_huge_k_is_capped_at_the_index_size(files):
    result = CliRunner().invoke(main, ["search", str(files["index"]), str(files["q.npy"]), "-k", str(10**12), "--json"])
    assert result.exit_code == 0, result.output
    report = strict_loads(result.stdout)
    assert report["k"] == 300
    assert np.asarray(report["ids"]).shape == (4, 300)
    assert result.stderr.strip() == f"note: -k {10**12} is more than the 300 points the index holds; returning 300 per query"


def test_search_json_writes_empty_slots_as_null(files):
    result = CliRunner().invoke(main, ["search", str(files["index"]), str(files["q.npy"]), "-k", "300", "--json"])
    assert result.exit_code == 0, result.output
    assert "Infinity" not in result.stdout and "NaN" not in result.stdout
    report = strict_loads(result.stdout)
    ids = np.asarray(report["ids"])
    empty = ids == -1
    assert empty.any() and (~empty).any()  # one of 5 partitions probed: most slots stay empty
    distances = report["distances"]
    for q in range(ids.shape[0]):
        assert [d is None for d in distances[q]] == empty[q].tolist()
    assert "null" in CliRunner().invoke(main, ["search", "--help"]).output


def test_every_json_output_is_strict(files, tmp_path, monkeypatch):
    """Each command with --json (those not covered elsewhere with the embedded sample)."""
    monkeypatch.setenv("ANNLIB_DATA_DIR", str(tmp_path))
    hdf5 = tmp_path / "tiny-16-euclidean.hdf5"
    data = np.load(files["data.npy"])
    queries = np.load(files["q.npy"])
    truth, distances = datasets.ground_truth(data, queries, 10, "squared_l2")
    datasets.write_hdf5(hdf5, data, queries, truth, np.sqrt(distances), "euclidean")
    index = str(files["index"])
    commands = [
        ["info"],
        ["info", index],
        ["datasets", "list"],
        ["datasets", "show", str(hdf5)],
        ["datasets", "ground-truth", str(hdf5), "-k", "10"],
        ["build", str(files["data.npy"]), "--metric", "dot", "--num-leaves", "5", "--out", str(tmp_path / "b.annl")],
        ["search", index, str(hdf5), "-k", "10"],
        ["tune", str(tmp_path / "b.annl"), str(files["q.npy"]), "--target-recall", "0.9"],
    ]
    for argv in commands:
        result = CliRunner().invoke(main, [*argv, "--json"])
        assert result.exit_code == 0, (argv, result.output)
        assert isinstance(strict_loads(result.stdout), (dict, list)), argv


@pytest.mark.parametrize("argv", [["datasets", "list"], ["info", "--json"]], ids=["text", "json"])
def test_closed_stdout_exits_quietly(argv):
    """`annlib ... | head` closes the pipe early: no 'Broken pipe' message, exit status 0."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "annlib.cli", *argv], stdout=write_end, stderr=subprocess.PIPE, timeout=120, check=False
        )
    finally:
        os.close(write_end)
    assert proc.stderr.decode() == ""
    assert proc.returncode == 0
