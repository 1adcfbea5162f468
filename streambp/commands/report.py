from typing import Annotated, Optional

import typer


NAME = "report"


def command(
    run_dir: Annotated[str, typer.Argument(help="Run directory of `streambp fit --run-dir` (with events.jsonl).")],
    out: Annotated[Optional[str], typer.Option(
        help="Directory for index.html and its images (default RUN_DIR/report).")] = None,
):
    """An HTML page of a run: loss, accuracy and throughput curves, the validation confusion matrix, per-epoch
    metrics and the configuration (needs matplotlib: the streambp report extra)."""
    from ..report import write_report

    print(write_report(run_dir, out))
