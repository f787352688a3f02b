"""Make the committed sample ``datasets/debian-minilm-10k.hdf5`` from the shared real dataset.

Takes the first 10,000 ``train`` and first 200 ``test`` vectors of
``debian-minilm-384-angular.hdf5``, stores them as float16 (so the file stays under 10 MB) and
recomputes exact ground truth for the subset *from the float16-rounded vectors* (cast to float32,
the way ``annlib.datasets.read_hdf5`` returns them), so the stored neighbors are exact for the data
as loaded. Ground truth is the ann-benchmarks angular distance ``1 - cos`` in float64, top 100,
ties broken by the smaller train id. Rounding to float16 moves the norms off 1 (by < 1e-4), so
the cosine is computed with the actual norms rather than as a plain dot product.

Usage::

    python datasets/make_sample.py [SOURCE] [--out datasets/debian-minilm-10k.hdf5]
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys

import h5py
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "datasets" / "debian-minilm-384-angular.hdf5"
DEFAULT_OUT = HERE / "debian-minilm-10k.hdf5"
N_TRAIN = 10_000
N_TEST = 200
K = 100
MAX_BYTES = 10 * 1000 * 1000
# Provenance attributes copied unchanged from the source file.
COPIED_ATTRS = ("model", "seed", "split", "corpus_size", "apt_packages", "max_seq_length")


def angular_ground_truth(train: np.ndarray, test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by ``1 - cos`` in float64; ties go to the smaller train id (stable sort)."""
    train64 = train.astype(np.float64)
    test64 = test.astype(np.float64)
    train64 /= np.linalg.norm(train64, axis=1, keepdims=True)
    test64 /= np.linalg.norm(test64, axis=1, keepdims=True)
    distance = 1.0 - test64 @ train64.T
    order = np.argsort(distance, axis=1, kind="stable")[:, :k]
    return order.astype(np.int32), np.take_along_axis(distance, order, axis=1).astype(np.float32)


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=pathlib.Path, default=DEFAULT_SOURCE, help="the full dataset")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="where to write the sample")
    args = parser.parse_args(argv)

    try:
        from annlib.datasets import write_hdf5
    except ImportError:  # not installed: use this checkout
        sys.path.insert(0, str(REPO))
        from annlib.datasets import write_hdf5

    with h5py.File(args.source, "r") as source:
        train16 = np.asarray(source["train"][:N_TRAIN], dtype=np.float16)
        test16 = np.asarray(source["test"][:N_TEST], dtype=np.float16)
        attrs = {key: source.attrs[key] for key in COPIED_ATTRS if key in source.attrs}
        parent_source = str(source.attrs.get("source", ""))
        distance = str(source.attrs["distance"])
    if distance != "angular":
        raise SystemExit(f"expected an angular dataset, {args.source} has distance={distance!r}")

    neighbors, distances = angular_ground_truth(train16.astype(np.float32), test16.astype(np.float32), K)
    write_hdf5(
        args.out,
        train16,
        test16,
        neighbors,
        distances,
        "angular",
        source=f"First {N_TRAIN} train and {N_TEST} test vectors of debian-minilm-384-angular. {parent_source}",
        parent=args.source.name,
        parent_sha256=sha256(args.source),
        subset=f"train[:{N_TRAIN}], test[:{N_TEST}] of the parent file",
        storage="train and test stored as float16 (read back as float32)",
        normalized="unit L2 norm before float16 rounding (|norm - 1| < 1e-4 after)",
        ground_truth=(
            f"exact top {K} by 1 - cos in float64 over the float16-rounded vectors cast to float32, "
            "ties broken by the smaller train id"
        ),
        generator="datasets/make_sample.py",
        **attrs,
    )
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size:,} bytes): train {train16.shape}, test {test16.shape}, k={K}")
    if size > MAX_BYTES:
        print(f"error: {args.out} is larger than {MAX_BYTES:,} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
