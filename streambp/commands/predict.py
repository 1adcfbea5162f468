from typing import Annotated, Optional

import typer

from . import parse_source_options

NAME = "predict"


def command(
    model: Annotated[str, typer.Argument(help="Model file written by `streambp fit`.")],
    data: Annotated[str, typer.Argument(help="Data with the model's feature columns.")],
    out: Annotated[str, typer.Option(help="Parquet file for the predictions.")] = "predictions.parquet",
    id: Annotated[Optional[str], typer.Option("--id", help="Column to copy into the output.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Data source name (default: by file extension).")] = None,
    source_option: Annotated[Optional[list[str]], typer.Option(
        help="KEY=VALUE for the source, repeatable (csv: delimiter, header, block_size).")] = None,
):
    """Write the predicted label and one probability column per class for each row of DATA."""
    from ..atomic import scope
    from ..evaluate import predict_to_parquet
    from ..model import load
    from ..registry import open_source

    with scope():  # the model and the data are inputs: --out may be neither
        rows = predict_to_parquet(load(model), open_source(data, source, **parse_source_options(source_option)),
                                  out, id)
    print(f"Wrote {rows:,} predictions to {out}.")
