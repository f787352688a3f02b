"""``annlib add`` / ``annlib delete`` on saved indexes of every kind."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import annlib
from annlib.cli import main


@pytest.fixture
def saved(tmp_path, real_sample):
    data = real_sample["train"][:3000]
    paths = {}
    annlib.TreeAhIndex(data[:2000], "dot", num_leaves=30, num_leaves_to_search=6,
                       ids=np.arange(2000) + 1000).save(tmp_path / "tree.annl")
    annlib.BruteForce(data[:2000], "dot", ids=np.arange(2000) + 1000).save(tmp_path / "exact.annl")
    paths["tree"], paths["exact"] = tmp_path / "tree.annl", tmp_path / "exact.annl"
    np.save(tmp_path / "new.npy", data[2000:])
    np.save(tmp_path / "new_ids.npy", np.arange(5000, 6000))
    (tmp_path / "dead.txt").write_text("1000, 1001\n1002 5999\n")
    return tmp_path, paths, data


@pytest.mark.parametrize("kind", ["tree", "exact"])
def test_add_then_delete_saves_the_index(saved, kind):
    tmp, paths, data = saved
    runner = CliRunner()
    r = runner.invoke(main, ["add", str(paths[kind]), str(tmp / "new.npy"), "--ids", str(tmp / "new_ids.npy")])
    assert r.exit_code == 0, r.output
    index = annlib.load_index(paths[kind])
    assert len(index) == 3000 and 5500 in index
    assert index.search(data[2500], k=1).ids[0] == 4500 + 1000
    r = runner.invoke(main, ["delete", str(paths[kind]), str(tmp / "dead.txt"), "--json"])
    assert r.exit_code == 0, r.output
    index = annlib.load_index(paths[kind])
    assert len(index) == 2996 and 1000 not in index and 5999 not in index and 1003 in index


def test_errors_are_one_line(saved):
    tmp, paths, _ = saved
    runner = CliRunner()
    r = runner.invoke(main, ["add", str(paths["tree"]), str(tmp / "new.npy"), "--ids", str(tmp / "new_ids.npy")])
    assert r.exit_code == 0
    before = paths["tree"].read_bytes()
    r = runner.invoke(main, ["add", str(paths["tree"]), str(tmp / "new.npy"), "--ids", str(tmp / "new_ids.npy")])
    assert r.exit_code == 1 and "already in the index: 5000" in r.output and "Traceback" not in r.output
    (tmp / "missing.txt").write_text("77\n")
    r = runner.invoke(main, ["delete", str(paths["tree"]), str(tmp / "missing.txt")])
    assert r.exit_code == 1 and "not in the index: 77" in r.output
    assert paths["tree"].read_bytes() == before  # a failed write leaves the file as it was
    r = runner.invoke(main, ["delete", str(paths["tree"]), str(tmp / "missing.txt"), "--ignore-missing"])
    assert r.exit_code == 0 and "deleted 0" in r.output
