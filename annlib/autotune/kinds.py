"""Which index kind answers a recall target cheapest on this machine: each from its own cost model.

* ``tree_ah``: the tuned index's predicted cost at the target (statistics + measured stage costs);
* ``brute_force``: exact C++ search, timed in the same mode and clock as the index's cost model;
* ``jax_brute_force``: the roofline model of :mod:`annlib.jax.roofline` (calibrated ceilings of the
  JAX device). Weighed by default only where JAX runs on an accelerator; on CPU only when asked
  for (``kinds=`` naming it), as XLA:CPU's brute force is rarely faster than the C++ one.

All costs are seconds per query in the caller's mode (see :mod:`annlib.autotune.cost_model`).
"""

from __future__ import annotations

from annlib.autotune import cost_model as _cost

KINDS = ("tree_ah", "brute_force", "jax_brute_force")


def check_kinds(kinds) -> tuple[str, ...]:
    """The kinds to weigh: ``"auto"`` (tree-AH, exact, JAX where it has an accelerator) or a subset of KINDS."""
    if isinstance(kinds, str) and kinds == "auto":
        found = ["tree_ah", "brute_force"]
        if jax_platform() not in (None, "cpu"):
            found.append("jax_brute_force")
        return tuple(found)
    kinds = tuple(kinds) if not isinstance(kinds, str) else (kinds,)
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be 'auto' or a non-empty subset of {KINDS}, got {kinds!r}")
    return kinds


def jax_platform() -> str | None:
    """JAX's default backend ("cpu", "gpu", "tpu"), or None without JAX."""
    try:
        import jax  # noqa: PLC0415 - optional extra
    except ImportError:
        return None
    try:
        return jax.default_backend()
    except RuntimeError:
        return None


def exact_cost(exact, queries, k: int, mode: str, num_threads: int) -> float:
    """Measured seconds per query of exact C++ search."""
    return _cost.time_brute_force(exact, queries, k, mode=mode, num_threads=num_threads)


def jax_cost(n: int, dim: int, mode: str) -> float | None:
    """Roofline seconds per query of the JAX brute force on its default device (None without JAX)."""
    if jax_platform() is None:
        return None
    from annlib.jax.roofline import predict_time  # noqa: PLC0415

    batch = 1 if mode == "single" else _cost.BATCH["batched"]
    return predict_time(n, dim, batch) / batch
