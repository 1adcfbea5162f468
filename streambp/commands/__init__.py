"""One module per `streambp` subcommand: NAME and a thin `command` function that calls the library."""


def parse_int_list(text, option):
    """'256,128' -> [256, 128]; '0' -> [] (no hidden layer); an empty entry ('', ' ', '8,') is an error."""
    from ..errors import StreambpError

    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise StreambpError(f"{option} takes comma-separated integers such as 256,128; got {text!r}.") from None
    return [] if values == [0] else values


def parse_names(text, option):
    """'a,b' -> ['a', 'b'] (column names, exactly as written); an empty name is an error."""
    from ..errors import StreambpError

    names = text.split(",")
    if not all(names):
        raise StreambpError(f"{option} takes comma-separated column names such as x0,x1; got {text!r}.")
    return names


def parse_source_options(items):
    """['delimiter=;', 'header=false', 'block_size=65536'] -> {'delimiter': ';', 'header': False, ...}."""
    from ..errors import StreambpError

    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StreambpError(f"--source-option takes KEY=VALUE, got {item!r}.")
        low = value.lower()
        options[key] = True if low == "true" else False if low == "false" else \
            int(value) if value.lstrip("-").isdigit() else value
    return options
