"""``annlib bench``: annlib and its peers on one dataset, recall against QPS."""

from __future__ import annotations

import click

from annlib.cli.app import JSON_HELP, emit_json, main


def _algorithm_list(_ctx, _param, value: str) -> list[str]:
    from annlib.bench import ALGORITHMS

    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALGORITHMS]
    if unknown or not names:
        raise click.BadParameter(f"unknown {', '.join(unknown) or '(none)'}; choose from {','.join(ALGORITHMS)}")
    return names


@main.command("bench")
@click.option("--dataset", default="debian-minilm-10k", show_default=True, help="Registry name or ann-benchmarks .hdf5 file.")
@click.option(
    "--algorithms",
    default="annlib,annlib-soar,scann,faiss-ivfpq,faiss-hnsw,hnswlib,jax-bruteforce",
    show_default=True,
    callback=_algorithm_list,
    help="Comma-separated; peers that are not installed are skipped.",
)
@click.option(
    "--mode",
    type=click.Choice(["single", "batch"]),
    default="single",
    show_default=True,
    help="single: one query per call on one CPU (ann-benchmarks' default); batch: all queries per call, all cores.",
)
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbors per query.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True, help="Timed runs per point; the median counts.")
@click.option("--queries", "max_queries", type=click.IntRange(min=1), default=None, help="Use only the first N queries (quick runs).")
@click.option("--out", "out", type=click.Path(file_okay=False), default="annlib-bench", show_default=True, help="Output directory.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def bench_command(
    dataset: str, algorithms: list[str], mode: str, k: int, runs: int, max_queries: int | None, out: str, as_json: bool
) -> None:
    """Benchmark annlib and its peers (recall vs QPS sweeps) on one dataset, ann-benchmarks style.

    Writes <out>/<dataset>-<mode>-k<k>.csv (every point), .md (QPS at recall 0.80/0.90/0.95/0.99,
    build time, index size) and .png (recall-vs-QPS Pareto frontiers, log QPS axis). Peers come
    from `pip install 'annlib[bench]'`.

    \b
    Examples:
      annlib bench
      annlib bench --dataset ../shared/datasets/debian-minilm-384-angular.hdf5 --mode batch --out bench/out
      annlib bench --algorithms annlib,hnswlib --queries 100 --runs 1
    """
    from annlib import bench as _bench

    command = f"annlib bench --dataset {dataset} --algorithms {','.join(algorithms)} --mode {mode} --k {k} --runs {runs}"
    if max_queries is not None:
        command += f" --queries {max_queries}"

    def notice(line: str) -> None:
        click.echo(line, err=True)

    try:
        result, files = _bench.benchmark(
            dataset, algorithms, mode, k, out, runs, max_queries, command=command, progress=not as_json, notice=notice
        )
    except EOFError:  # numpy's answer to an empty or cut-off .npy
        raise click.ClickException(f"{dataset}: the file is empty or truncated") from None
    if as_json:
        rows = _bench.summary_rows(result)
        for row in rows:
            row["at"] = {f"{target:.2f}": value for target, value in row["at"].items()}
        emit_json({"files": files, "seconds": result.seconds, "skipped": result.skipped, "algorithms": rows})
        return
    with open(files["table"]) as f:
        click.echo(f.read())
    click.echo(f"wrote {files['csv']}, {files['table']}, {files['plot']} in {result.seconds:.0f} s")

