"""The `streambp` command: a Typer app whose commands live one per module in streambp/commands/."""
import functools
import sys

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .errors import StreambpError
from .plugins import call_hook

app = typer.Typer(help="Train fully-connected networks on datasets larger than memory.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False, add_completion=False)
stderr = Console(stderr=True)


def user_errors(fn):
    """Show a StreambpError as one paragraph on stderr and exit with its code, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StreambpError as e:
            stderr.print(f"[bold red]Error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def version_callback(value: bool):
    if value:
        print(f"streambp {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                              help="Show the version and exit.")):
    """streambp: sigmoid/softmax networks trained by backpropagation, streamed from Parquet."""


def register_builtin_commands():
    from .commands import evaluate, fit, gradcheck, inspect, plugins, predict, report

    for module in (fit, predict, evaluate, inspect, plugins, gradcheck, report):
        app.command(module.NAME)(user_errors(module.command))


register_builtin_commands()
call_hook("register_commands", app=app)


def main():
    sys.exit(app())
