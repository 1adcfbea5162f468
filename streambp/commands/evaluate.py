import contextlib
import json
import os
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console  # typer's own help uses rich: no extra import time
from rich.table import Table

from . import parse_source_options

NAME = "evaluate"


def command(
    model: Annotated[str, typer.Argument(help="Model file written by `streambp fit`.")],
    data: Annotated[str, typer.Argument(help="Labelled data with the model's feature columns.")],
    label: Annotated[str, typer.Option(help="Label column.")] = "label",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    source: Annotated[Optional[str], typer.Option(help="Data source name (default: by file extension).")] = None,
    source_option: Annotated[Optional[list[str]], typer.Option(
        help="KEY=VALUE for the source, repeatable (csv: delimiter, header, block_size).")] = None,
):
    """Accuracy, log loss, per-class precision and recall, and the confusion matrix on DATA."""
    from ..evaluate import evaluate
    from ..model import load
    from ..registry import open_source

    m = evaluate(load(model), open_source(data, source, **parse_source_options(source_option)), label)
    with reader_may_stop():
        show(m, as_json)


class PipeConsole(Console):
    def on_broken_pipe(self):  # rich's own handler exits 1
        raise BrokenPipeError


@contextlib.contextmanager
def reader_may_stop():
    """`streambp evaluate ... | head`: when the reader closes the pipe, stop writing and exit 0."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise SystemExit(0) from None


def show(m, as_json):
    if as_json:
        print(json.dumps(m, indent=2))
        return
    console = PipeConsole()
    console.print(f"rows {m['n_rows']:,}  accuracy {m['accuracy']:.4f}  log loss {m['log_loss']:.4f}")
    if m["unknown_labels"]:
        console.print(f"{m['unknown_labels']:,} rows have labels the model never saw; they are not counted.")
    table = Table("class", "precision", "recall", *[str(c) for c in m["classes"]], title="confusion (rows: true)")
    for c, p, r, row in zip(m["classes"], m["precision"], m["recall"], m["confusion_matrix"]):
        table.add_row(str(c), f"{p:.3f}", f"{r:.3f}", *map(str, row))
    console.print(table)
