"""The `streambp` command: a Typer app whose commands live one per module in streambp/commands/.

Only Typer and the command modules (which import Typer alone at module level) load for --help and
--version; each command imports what it needs when it runs."""
import functools
import sys

import typer

from . import __version__
from .errors import StreambpError, printable

app = typer.Typer(help="Train fully-connected networks on datasets larger than memory.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False, add_completion=False)


def user_errors(fn):
    """Show a StreambpError as one paragraph on stderr and exit with its code, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StreambpError as e:
            from rich.console import Console
            from rich.markup import escape

            prefix = "" if e.exit_code == 130 else "[bold red]Error:[/] "  # an interrupt is not an error
            Console(stderr=True).print(f"{prefix}{escape(printable(str(e)))}", highlight=False, soft_wrap=True)
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
    from .commands import cache, evaluate, fit, gradcheck, inspect, plugins, predict, report

    for module in (fit, predict, evaluate, inspect, plugins, gradcheck, report):
        app.command(module.NAME)(user_errors(module.command))
    for command in cache.app.registered_commands:  # a group of subcommands
        command.callback = user_errors(command.callback)
    app.add_typer(cache.app, name=cache.NAME)


def register_plugin_commands():
    """Let plugins add commands (the register_commands hook); a plugin failing there is named, and the
    built-in commands still run."""
    from .plugins import call_hook

    try:
        call_hook("register_commands", app=app)
    except StreambpError as e:
        print(f"streambp: warning: {e}", file=sys.stderr)


register_builtin_commands()
register_plugin_commands()


def main():
    sys.exit(app())
