"""The one exception type for user errors: printed as a single paragraph, exit code 2."""


class StreambpError(Exception):
    """A problem with the user's input, data or files, not a bug: shown without a traceback."""

    exit_code = 2


def printable(text):
    """text with every control character (ESC of an ANSI or OSC sequence, BEL, ...) shown as its escape, so
    that a file name or a cell value printed to the terminal cannot clear it or set its title."""
    return "".join(ch if ch.isprintable() or ch == "\n" else ascii(ch)[1:-1] for ch in text)
