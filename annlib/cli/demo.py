"""``annlib demo``: the README's first run (the work is done by :mod:`annlib.demo`)."""

from __future__ import annotations

import click

from annlib import demo as _demo
from annlib.cli.app import JSON_HELP, emit_json, main


@main.command()
@click.option("--dataset", default="debian-minilm-10k", show_default=True, help="Registry name or file.")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbors per query.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def demo(dataset: str, k: int, as_json: bool) -> None:
    """Search the embedded real sample exactly and with the quantization index (with and
    without SOAR); print recall@k against the file's ground truth and queries per second.

    \b
    Example:
      annlib demo
      annlib demo --dataset ../shared/datasets/debian-minilm-384-angular.hdf5
    """
    try:
        report = _demo.run(dataset, k)
    except EOFError:  # numpy's answer to an empty or cut-off .npy
        raise click.ClickException(f"{dataset}: the file is empty or truncated") from None
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"{report.dataset}: {report.n} points x {report.dim} dims, {report.queries} queries, k={report.k}")
    for row in report.rows:
        click.echo(
            f"  {row.index:<26} recall@{report.k} {row.recall:.4f}   {row.qps:>10,.0f} QPS   build {row.build_s:.2f}s"
        )
