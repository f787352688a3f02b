"""Type stubs for annlib's compiled core (csrc/bindings). Internal: use the annlib package instead.

Array arguments accept anything numpy converts to the C-contiguous dtype named (``ArrayLike`` of
that dtype); results are new numpy arrays. ``isa`` names a SIMD path ("scalar", "avx2",
"avx512"); ``num_threads=0`` means all hardware threads. tests/test_core_stub.py keeps the names
and parameters here in step with the module.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_F32 = npt.NDArray[np.float32]
_I32 = npt.NDArray[np.int32]
_I64 = npt.NDArray[np.int64]
_U8 = npt.NDArray[np.uint8]

# ---------------------------------------------------------------------------- CPU and SIMD (module.cc)

def cpu_features() -> dict[str, bool]:
    """CPU features read from cpuid: avx2, fma, avx512f, avx512bw, avx512dq, avx512vl."""

def supported_isas() -> list[str]:
    """SIMD paths this CPU can run, scalar first."""

def active_isa() -> str:
    """The SIMD path in use."""

def set_isa(name: str) -> None:
    """Switch the process-wide SIMD path; ValueError if this CPU cannot run it."""

def hardware_threads() -> int: ...
def affinity_cpus() -> int:
    """CPUs in this thread's affinity mask (0 when unknown)."""

def cgroup_quota_cpus(cgroup_root: str = "/sys/fs/cgroup", proc_self_cgroup: str = "/proc/self/cgroup") -> int:
    """CPUs granted by the cgroup quota, rounded up; 0 when unlimited or unknown."""

def default_threads() -> int:
    """The thread count num_threads=0 resolves to."""

# ---------------------------------------------------------------------------- exact search (module.cc)

def squared_norms(data: npt.ArrayLike) -> _F32:
    """Squared L2 norm of each row of float32 ``data`` (n, dim): float32 (n,)."""

def exact_search(
    data: npt.ArrayLike,
    data_sq_norms: npt.ArrayLike | None,
    queries: npt.ArrayLike,
    k: int,
    metric: str,
    num_threads: int,
    filter_bits: npt.ArrayLike | None = None,
    filter_table: npt.ArrayLike | None = None,
    filter_of_query: npt.ArrayLike | None = None,
    row_ids: npt.ArrayLike | None = None,
) -> tuple[_I64, _F32]:
    """Exact k best of float32 ``data`` (n, dim) for ``queries`` (nq, dim): (ids (nq, k), distances (nq, k)).

    Filtered (csrc/bindings/filter_args.h): ``filter_bits`` uint8 (filters, ceil(n / 8)) allowed rows,
    ``filter_table`` uint64 (filters, 4) = has_bits, predicate address, data address, kind;
    ``filter_of_query`` int32 (nq,); ``row_ids`` int64 (n,), the user ids predicates see."""

def evaluate_filter(
    filter_bits: npt.ArrayLike | None,
    filter_table: npt.ArrayLike | None,
    row_ids: npt.ArrayLike | None,
    rows: npt.ArrayLike,
    num_threads: int,
) -> _U8:
    """1 where the one filter allows the row, for each of int64 ``rows``; predicates run without the GIL."""

def dot_block(queries: npt.ArrayLike, points: npt.ArrayLike, isa: str | None = None) -> _F32:
    """Inner products of every query with every point, on the calling thread, by the active SIMD
    path or by ``isa`` (tests). Not numpy's matmul: BLAS leaves its threads spinning on the other cores."""

def dot_f32_i8(q: npt.ArrayLike, x: npt.ArrayLike, isa: str) -> float:
    """<q, x> of a float32 vector and an int8 vector via one SIMD path's kernel (for tests)."""

def dot_by_dim(queries: npt.ArrayLike, points: npt.ArrayLike, isa: str) -> _F32:
    """Inner products of one query (dim,) or several (nq, dim) with points, dimension-major kernel (for tests)."""

# ---------------------------------------------------------------------------- LUT16 (bind_lut16.cc)

def pack_lut16_codes(codes: npt.ArrayLike) -> _U8:
    """Pack uint8 codes (n, num_blocks), values 0..15, into the LUT16 scan layout (1-D uint8)."""

def unpack_lut16_codes(packed: npt.ArrayLike, n: int, num_blocks: int) -> _U8:
    """Inverse of pack_lut16_codes: uint8 codes of shape (n, num_blocks)."""

def quantize_lut16(lut: npt.ArrayLike, isa: str = "") -> tuple[_U8, float]:
    """Float32 LUT (num_blocks, 16) -> (uint8 entries round(lut*m)+128, multiplier m)."""

def build_lut(query: npt.ArrayLike, codebook: npt.ArrayLike, dims_per_block: int, isa: str) -> _F32:
    """Float LUT16 table (num_blocks, 16) of one query with one SIMD path (for tests)."""

def greater_mask32(values: npt.ArrayLike, cutoff: int, isa: str) -> int:
    """Bit i set when values[i] > cutoff, for int32 ``values`` of shape (32,) (for tests)."""

def l2_mask32(
    sums: npt.ArrayLike, sq_norms: npt.ArrayLike, two_bias: float, two_inv_m: float, threshold: float, isa: str
) -> npt.NDArray[np.uint32]:
    """uint32 mask per group of 32: bit i when (two_bias + sums[i] * two_inv_m) - sq_norms[i] >= threshold (for tests)."""

def lut16_keep(packed: npt.ArrayLike, n: int, num_blocks: int, keep: npt.ArrayLike, isa: str) -> _U8:
    """The packed layout of the entries p with keep[p] != 0 (uint8, n), in order, moved with one SIMD path."""

def lut16_scan(packed: npt.ArrayLike, n: int, num_blocks: int, luts: npt.ArrayLike, isa: str) -> _I32:
    """int32 (num_queries, n): sum over blocks of (luts[q, k, code_k(p)] - 128), using one SIMD path."""

# ---------------------------------------------------------------------------- training (bind_train.cc)

def train_kmeans(
    sample: npt.ArrayLike,
    num_centers: int,
    max_iterations: int,
    spherical: bool,
    seed: int,
    min_cluster_size: int,
    num_threads: int,
    tolerance: float = 1e-05,
) -> _F32:
    """k-means centers (num_centers, dim) of float32 ``sample`` (n, dim)."""

def assign_to_centers(
    data: npt.ArrayLike, centers: npt.ArrayLike, num_threads: int, with_sq_dist: bool = True
) -> tuple[_I32, _F32 | None]:
    """Nearest center of each row: (assignment int32 (n,), squared distance float32 (n,), or None without
    ``with_sq_dist``)."""

def train_pq(residuals: npt.ArrayLike, dims_per_block: int, iterations: int, seed: int, num_threads: int) -> _F32:
    """PQ codebook: 16 centers per block, flattened to float32 (16 * dim,)."""

def encode_pq(
    centers: npt.ArrayLike,
    dims_per_block: int,
    residuals: npt.ArrayLike,
    originals: npt.ArrayLike,
    threshold: float,
    num_threads: int,
    isa: str = "",
    reference: bool = False,
) -> _U8:
    """Anisotropic PQ codes uint8 (n, num_blocks) of ``residuals`` (score-aware loss at ``threshold``).

    ``isa`` names the SIMD kernels (empty: the active path); ``reference=True`` runs the scalar double
    reference encoder instead (tests compare the two)."""

def encode_pq_entries(
    centers: npt.ArrayLike,
    dims_per_block: int,
    data: npt.ArrayLike,
    partition_centers: npt.ArrayLike,
    points: npt.ArrayLike,
    leaves: npt.ArrayLike,
    threshold: float,
    num_threads: int,
    sq_norms: bool = False,
) -> tuple[_U8, _F32 | None]:
    """Codes (m, num_blocks) of index entries: entry i encodes ``data[points[i]] - partition_centers[leaves[i]]``
    along ``data[points[i]]`` (int64 ``points``, ``leaves``); with ``sq_norms`` also the squared norms of the
    entries' reconstructions ``partition_centers[leaves[i]] + r~`` (float32 (m,)), else None."""

def pq_tables(
    residual: npt.ArrayLike,
    original: npt.ArrayLike | None,
    codebook_by_dim: npt.ArrayLike,
    dims_per_block: int,
    inv_norm: float,
    isa: str,
) -> tuple[_F32, _F32, _U8]:
    """One point's encoder tables with one SIMD path's kernel (for tests): residual_norm (B, 16),
    parallel (B, 16) (zeros when ``original`` is None) and the nearest codeword of each block (B,)."""

def pq_order(residual_norm: npt.ArrayLike, code: npt.ArrayLike, isa: str) -> npt.NDArray[np.uint32]:
    """Blocks by descending ``residual_norm[k, code[k]]`` (residual_norm (B, 16), all >= 0), ties by block
    index, with one SIMD path's kernel (for tests)."""

def pq_descent(
    residual_norm: npt.ArrayLike,
    parallel: npt.ArrayLike,
    order: npt.ArrayLike,
    eta: float,
    p: float,
    max_rounds: int,
    code: npt.ArrayLike,
    isa: str,
) -> _U8:
    """One point's coordinate descent from ``code`` with one SIMD path's kernel (for tests)."""

def decode_pq(centers: npt.ArrayLike, dims_per_block: int, codes: npt.ArrayLike) -> _F32:
    """Reconstructions float32 (n, dim) of uint8 ``codes`` (n, num_blocks)."""

def parallel_cost_multiplier(threshold: float, sq_norm: float, dim: int) -> float:
    """eta = (dim - 1) (T^2/||x||^2) / (1 - T^2/||x||^2); 1 for T NaN or <= 0."""

def score_aware_loss(originals: npt.ArrayLike, reconstructions: npt.ArrayLike, eta: float) -> float:
    """Score-aware (anisotropic) loss of ``reconstructions`` against ``originals`` at ``eta``."""

# ---------------------------------------------------------------------------- SOAR (bind_soar.cc)

def soar_assign(
    data: npt.ArrayLike,
    centers: npt.ArrayLike,
    primary: npt.ArrayLike,
    soar_lambda: float,
    mode: str = "soar",
    num_threads: int = 0,
) -> _I32:
    """Secondary (spilled) center per point, primary excluded; int32 (n,), all -1 with one center."""

# ---------------------------------------------------------------------------- tree-AH search (bind_index.cc)

class TreeAhHandle:
    """A tree-AH searcher over the arrays of one index (the dict keeps them alive)."""

    def __init__(
        self,
        arrays: dict[str, Any],
        metric: str,
        n: int,
        dim: int,
        num_leaves: int,
        dims_per_block: int,
        spilled: bool,
    ) -> None: ...
    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        leaves_to_search: int,
        pre_reorder: int,
        num_threads: int,
        overretrieve_factor: float = 1.5,
        raw_scores: bool = False,
        filter_bits: npt.ArrayLike | None = None,
        filter_table: npt.ArrayLike | None = None,
        filter_of_query: npt.ArrayLike | None = None,
        row_ids: npt.ArrayLike | None = None,
        leaf_allowed: npt.ArrayLike | None = None,
        exact_reorder: int = 0,
        leaf_sizes: npt.ArrayLike | None = None,
    ) -> tuple[_I64, _F32]:
        """Search float32 ``queries`` (nq, dim): (ids int64 (nq, k), distances float32 (nq, k));
        ``raw_scores``: the ranking scores (larger is better) instead of distances. Filters as for
        ``exact_search``; ``leaf_allowed`` int64 (filters, num_leaves): allowed entries per leaf.
        ``exact_reorder``: with int8 and float32 rows, the best this many of the int8 rescoring are
        rescored with the float32 rows (0: int8 only). ``leaf_sizes`` int64 (num_leaves,), with
        ``leaf_allowed``: the leaf sizes the widened walk's target counts instead of this index's
        own (a shard walking as the whole sharded index would)."""
    def last_counters(self) -> dict[str, int]:
        """Work done by the last search: entries scored by LUT16, candidates reordered (and rescored
        exactly by a two-stage reordering), leaves scanned."""

def leaf_append(
    arrays: dict[str, Any],
    num_blocks: int,
    new_ids: npt.ArrayLike,
    new_leaves: npt.ArrayLike,
    new_codes: npt.ArrayLike,
    new_values: npt.ArrayLike | None,
    num_threads: int,
) -> dict[str, Any]:
    """The entry tables of ``arrays`` (leaf_offsets, leaf_group_offsets, entry_ids, packed_codes and, when
    present, entry_sq_norms) with new entries (int32 ids, int64 leaves, uint8 codes (m, num_blocks), float32
    values exactly when entry_sq_norms is present) appended to their leaves, as a dict of new arrays."""

def leaf_select(arrays: dict[str, Any], num_blocks: int, renumber: npt.ArrayLike, num_threads: int) -> dict[str, Any]:
    """The entry tables of ``arrays`` keeping the entries whose point p has ``renumber[p] >= 0`` (int64 (rows,)),
    renumbered to it, as a dict of new arrays."""

def leaf_prune(
    arrays: dict[str, Any],
    num_blocks: int,
    live: npt.ArrayLike,
    candidates: npt.ArrayLike | None,
    min_dead_fraction: float,
    num_threads: int,
) -> dict[str, Any] | None:
    """The entry tables of ``arrays`` without the entries of dead points (``live[p] == 0``, uint8 (rows,)) in
    each leaf among ``candidates`` (uint8 (num_leaves,), or None for every leaf) whose dead entries are at
    least ``min_dead_fraction`` of its entries, as a dict of new arrays; None when no leaf qualifies."""

# ---------------------------------------------------------------------------- autotuner (bind_autotune.cc)

def autotune_ah_ranks(
    arrays: dict[str, Any],
    metric: str,
    n: int,
    dim: int,
    num_leaves: int,
    dims_per_block: int,
    spilled: bool,
    queries: npt.ArrayLike,
    truth: npt.ArrayLike,
    exclude: npt.ArrayLike | None,
    t1_grid: npt.ArrayLike,
    max_rank: int,
    num_threads: int,
) -> tuple[_I32, _I32]:
    """Ranks of each true neighbor among the AH candidates per t1 of the grid: two int32 (nq, k, len(t1_grid))."""
