"""The one exception type for user errors: printed as a single paragraph, exit code 2."""


class StreambpError(Exception):
    """A problem with the user's input, data or files, not a bug: shown without a traceback."""

    exit_code = 2
