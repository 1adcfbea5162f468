"""One module per `streambp` subcommand: NAME and a thin `command` function that calls the library."""


def parse_int_list(text, option):
    """'256,128' -> [256, 128]; '0' -> [] (no hidden layer)."""
    from ..errors import StreambpError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise StreambpError(f"{option} takes comma-separated integers such as 256,128; got {text!r}.") from None
    return [] if values == [0] else values
