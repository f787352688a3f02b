"""Benchmark annlib.tpu_knn (issue 5) against the bare matmul and XLA's top-k ops.

For each dataset and query batch size, on the same device arrays:

* ``stream``       jitted ``jnp.sum(x, axis=1)``: one streaming read of this very
                   database buffer (what a memory-bound search cannot beat);
* ``matmul``       jitted ``q @ x.T`` alone (the roofline's compute: the floor;
                   for nq=1 the bare matvec);
* ``top_k``        jitted ``lax.top_k(q @ x.T, k)`` (exact selection on the same scores);
* ``approx_max_k`` jitted ``lax.approx_max_k(q @ x.T, k, recall_target)`` (exact
                   fallback off TPU);
* ``tpu_knn``      ``annlib.tpu_knn.search(x, q, k, recall_target=...)`` end to end
                   (validation, tiled matmul + PartialReduce, result to numpy);
* ``roofline``     ``tpu_knn.predict_time(n, d, nq)``.

Times are medians over repeats, timed round-robin (one call of each method per
round). Ratios between methods are medians of the ratios within a round; the
ratio to the roofline is of medians, whose ceilings are medians too (see
``calibrate``). Recall@k of tpu_knn is against ``lax.top_k``.
Prints a markdown table. ``--large N`` instead searches 1000 queries over an
N x 128 Gaussian set once and reports the memory the search added (Linux
``VmHWM``, reset before the search) next to the size a full score matrix would
have. Usage::

    python bench/tpu_knn.py [--repeats 5] [--batches 1 100 1000] [--skip-synthetic]
    python bench/tpu_knn.py --large 10000000
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import jax
from jax import lax

# The baselines score float32 at full precision, as tpu_knn does (a GPU's default is TF32).
jax.config.update("jax_default_matmul_precision", "highest")

from annlib import tpu_knn
from annlib.metrics import id_recall

MINILM = REPO_ROOT.parent / "shared" / "datasets" / "debian-minilm-384-angular.hdf5"


def interleaved_times(fns, repeats):
    """Seconds of each call of each function, timed in rounds: one call of each per round.

    The machine is shared and its memory bandwidth drifts by 1.5x within a minute;
    timing in rounds gives every method the same spells of noise, and a ratio
    taken within each round cancels the drift that is slower than a round.
    """
    for fn in fns.values():
        jax.block_until_ready(fn())
    times = {name: [] for name in fns}
    order = list(fns)
    shuffle = np.random.default_rng(0).shuffle
    for _ in range(repeats):
        # a fresh order each round: what ran just before a call (and so what it left
        # in the caches) moved single-query times by up to 0.2 ms
        shuffle(order)
        for name in order:
            fn = fns[name]
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: np.asarray(t) for name, t in times.items()}


def paired_ratio(times, name, other):
    """Median over rounds of ``name``'s time over ``other``'s in the same round."""
    return float(np.median(times[name] / times[other]))


def load_minilm(num_queries):
    import h5py

    with h5py.File(MINILM, "r") as f:
        train = np.asarray(f["train"], dtype=np.float32)
        test = np.asarray(f["test"], dtype=np.float32)
    # angular: normalise once, then every method ranks by the dot product
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    test /= np.linalg.norm(test, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    queries = test[
        rng.choice(len(test), size=num_queries, replace=num_queries > len(test))
    ]
    return train, queries


def synthetic(n, dim, num_queries):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, dim), dtype=np.float32), rng.standard_normal(
        (num_queries, dim), dtype=np.float32
    )


def bench_dataset(name, train, all_queries, batches, k, recall_target, repeats):
    x = jax.device_put(train)
    n, dim = train.shape
    matmul = jax.jit(lambda q, x: q @ x.T)
    stream = jax.jit(lambda x: jax.numpy.sum(x, axis=1))
    exact = jax.jit(lambda q, x: lax.top_k(q @ x.T, k))
    approx = jax.jit(
        lambda q, x: lax.approx_max_k(q @ x.T, k, recall_target=recall_target)
    )
    rows = []
    for nq in batches:
        q = jax.device_put(all_queries[:nq])
        # single queries take milliseconds and their times scatter most: many rounds
        reps = 8 * repeats if nq == 1 else repeats if n * nq <= 10**8 else max(3, repeats // 2)
        times = interleaved_times(
            {
                "stream": lambda: stream(x),
                "matmul": lambda q=q: matmul(q, x),
                "top_k": lambda q=q: exact(q, x),
                "approx_max_k": lambda q=q: approx(q, x),
                "tpu_knn": lambda q=q: tpu_knn.search(x, q, k, "dot", recall_target),
            },
            reps,
        )
        t_stream, t_matmul, t_exact, t_approx, t_ours = (
            float(np.median(times[name]))
            for name in ("stream", "matmul", "top_k", "approx_max_k", "tpu_knn")
        )
        ids, _ = tpu_knn.search(x, q, k, "dot", recall_target)
        # Exact ids in chunks of 1000 queries: XLA's GPU top_k over a [10000, 1M] score matrix
        # (1e10 entries, past int32 indexing) returned wrong ids on an H200.
        truth = np.concatenate([np.asarray(exact(q[i : i + 1000], x)[1]) for i in range(0, nq, 1000)])
        predicted = tpu_knn.predict_time(n, dim, nq)
        rows.append(
            {
                "dataset": name,
                "nq": nq,
                "stream_ms": 1e3 * t_stream,
                "matmul_ms": 1e3 * t_matmul,
                "top_k_ms": 1e3 * t_exact,
                "approx_max_k_ms": 1e3 * t_approx,
                "tpu_knn_ms": 1e3 * t_ours,
                "roofline_ms": 1e3 * predicted,
                "stream_best_ms": 1e3 * float(np.min(times["stream"])),
                "ratio_stream": paired_ratio(times, "tpu_knn", "stream"),
                "ratio_matmul": paired_ratio(times, "tpu_knn", "matmul"),
                "ratio_top_k": paired_ratio(times, "tpu_knn", "top_k"),
                "ratio_roofline": t_ours / predicted,
                "gflops": 2 * n * dim * nq / t_ours / 1e9,
                "recall": id_recall(ids, truth, k),
            }
        )
        print_row(rows[-1])
    return rows


HEADER = (
    "| dataset | nq | stream ms | matmul ms | top_k ms | approx_max_k ms | tpu_knn ms | roofline ms "
    "| tpu_knn / stream | tpu_knn / matmul | tpu_knn / top_k | tpu_knn / roofline | tpu_knn GFLOP/s | recall@10 |"
)


def print_row(r):
    print(
        f"| {r['dataset']} | {r['nq']} | {r['stream_ms']:.2f} | {r['matmul_ms']:.2f} | {r['top_k_ms']:.2f} | {r['approx_max_k_ms']:.2f} "
        f"| {r['tpu_knn_ms']:.2f} | {r['roofline_ms']:.2f} | {r['ratio_stream']:.2f} | {r['ratio_matmul']:.2f} | {r['ratio_top_k']:.2f} "
        f"| {r['ratio_roofline']:.2f} | {r['gflops']:.1f} | {r['recall']:.3f} |",
        flush=True,
    )


def _status_gb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1e6
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def large(n, dim=128, nq=1000, k=10, recall_target=0.95):
    """One search over n x dim: time, GFLOP/s and the peak memory it added."""
    rng = np.random.default_rng(0)
    host = np.empty((n, dim), np.float32)
    for start in range(0, n, 1_000_000):  # bounded temporaries while generating
        rows = min(1_000_000, n - start)
        host[start : start + rows] = rng.standard_normal((rows, dim), dtype=np.float32)
    x = jax.device_put(host)
    del host
    q = jax.device_put(rng.standard_normal((nq, dim), dtype=np.float32))
    jax.block_until_ready(x)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM to the current RSS
    before = _status_gb("VmRSS")
    start = time.perf_counter()
    ids, _ = tpu_knn.search(x, q, k, "dot", recall_target)
    seconds = time.perf_counter() - start
    added = max(_status_gb("VmHWM") - before, 0.0)
    truth = np.asarray(jax.jit(lambda q, x: lax.top_k(q @ x.T, k)[1])(q[:20], x))
    print(
        f"| {n:,} x {dim} | {nq} | {x.nbytes / 1e9:.2f} | {4 * n * nq / 1e9:.1f} | {added:.2f} "
        f"| {seconds:.1f} | {2 * n * dim * nq / seconds / 1e9:.0f} | {id_recall(ids[:20], truth, k):.3f} |"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--recall-target", type=float, default=0.95)
    parser.add_argument("--synthetic-n", type=int, default=1_000_000)
    parser.add_argument("--synthetic-dim", type=int, default=128)
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--large", type=int, metavar="N", help="only the N x 128 memory run")
    args = parser.parse_args(argv)
    if args.large:
        print(
            "| data | nq | database GB | full score matrix GB | peak memory added GB | seconds | GFLOP/s "
            "| recall@10 (20 queries) |\n|---|---|---|---|---|---|---|---|"
        )
        large(args.large, nq=1000, k=args.k, recall_target=args.recall_target)
        return []

    peak, bandwidth, latency = tpu_knn.calibrate()
    print(
        f"jax {jax.__version__}, device {jax.devices()[0]}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
        f"calibrated peak {peak / 1e9:.1f} GFLOP/s, bandwidth {bandwidth / 1e9:.1f} GB/s, latency {latency * 1e3:.3f} ms; "
        f"k={args.k}, recall_target={args.recall_target}, "
        f"L={max(tpu_knn.bins_for_recall(args.k, args.recall_target), args.k)} bins, repeats={args.repeats}\n"
    )
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    rows = []
    nq_max = max(args.batches)
    if not args.skip_minilm and MINILM.exists():
        train, queries = load_minilm(nq_max)
        rows += bench_dataset(
            "minilm 50k x 384",
            train,
            queries,
            args.batches,
            args.k,
            args.recall_target,
            args.repeats,
        )
        del train
    if not args.skip_synthetic:
        train, queries = synthetic(args.synthetic_n, args.synthetic_dim, nq_max)
        name = f"gaussian {args.synthetic_n // 1000}k x {args.synthetic_dim}"
        rows += bench_dataset(
            name, train, queries, args.batches, args.k, args.recall_target, args.repeats
        )
    print("\nSpread of the stream pass (why the roofline's ceilings are medians, not best times):")
    for r in rows:
        print(
            f"- {r['dataset']}, nq={r['nq']}: best {r['stream_best_ms']:.2f} ms, "
            f"median {r['stream_ms']:.2f} ms ({r['stream_ms'] / r['stream_best_ms']:.2f}x)"
        )
    return rows


if __name__ == "__main__":
    main()
