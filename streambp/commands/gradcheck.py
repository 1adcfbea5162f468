from typing import Annotated

import typer

NAME = "gradcheck"


def command(
    sizes: Annotated[str, typer.Option(metavar="N,N,...", help="Layer sizes from inputs to classes.")] = "20,16,8,4",
    rows: Annotated[int, typer.Option(metavar="N", help="Rows in the sample batch.")] = 8,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed for the network and the batch.")] = 0,
    tolerance: Annotated[float, typer.Option(
        metavar="T", help="Exit 1 if the largest relative error exceeds this.")] = 1e-6,
):
    """Compare the backprop gradient with central finite differences in float64."""
    from . import parse_int_list
    from ..errors import StreambpError
    from ..gradcheck import gradcheck

    layer_sizes = parse_int_list(sizes, "--sizes")
    if len(layer_sizes) < 2 or min(layer_sizes) < 1 or rows < 1:
        raise StreambpError("--sizes needs at least an input and an output size, all positive, and --rows >= 1.")
    if not tolerance >= 0:  # NaN too, which every error would pass
        raise StreambpError(f"--tolerance takes a number of at least 0, got {tolerance:g}; e.g. --tolerance 1e-6.")
    error, checked = gradcheck(layer_sizes, rows=rows, seed=seed)
    print(f"checked {checked:,} parameters of {'-'.join(map(str, layer_sizes))} on {rows} rows: largest relative "
          f"error {error:.3e} ({'ok' if error <= tolerance else 'FAILED'}, tolerance {tolerance:g})")
    if error > tolerance:
        raise typer.Exit(1)
