"""Every hook a streambp plugin can implement, grouped by phase.

Each docstring follows one template: what the hook is for, its parameters, what it returns, and
whether it is firstresult. Implement a hook with the `streambp.hookimpl` marker; see docs/plugins.md.
"""
import pluggy

hookspec = pluggy.HookspecMarker("streambp")


# --- Registration: called once when the plugin manager is first used ------------------------------

@hookspec
def register_optimizers(register):
    """Add optimizers selectable with ``streambp fit --optimizer NAME``.

    Parameters:
        register: ``register(name, factory)``. ``factory(theta, **hyper_parameters)`` builds an
            optimizer for the flat parameter buffer theta [P]; the optimizer has
            ``step(theta [P], dtheta [P], lr)`` (updates theta in place), ``state_dict() -> dict``
            and ``load_state_dict(dict)``.
    Returns: nothing. Not firstresult: every plugin may register names; a duplicate name is an error.
    """


@hookspec
def register_loggers(register):
    """Add loggers selectable with ``streambp fit --logger NAME``.

    Parameters:
        register: ``register(name, factory)``. ``factory(**options)`` builds a logger with the methods
            ``fit_start(info: dict)``, ``step(info: dict)``, ``epoch_end(info: dict)`` and
            ``fit_end(info: dict)``; info holds plain Python values (see docs/plugins.md).
    Returns: nothing. Not firstresult.
    """


@hookspec
def register_sources(register):
    """Add data sources, chosen by file extension (or ``--source NAME``).

    Parameters:
        register: ``register(name, factory, extensions)``. ``factory(path)`` opens a dataset and
            returns an object with ``files`` (list of str), ``schema`` (pyarrow.Schema),
            ``num_rows`` (int or None) and ``batches(columns, batch_rows)`` yielding
            ``(file, first_row_index_in_file, pyarrow.RecordBatch)`` with only those columns.
            ``extensions`` is a tuple such as ``(".parquet", ".pq")``.
    Returns: nothing. Not firstresult.
    """


@hookspec
def register_commands(app):
    """Add subcommands to the ``streambp`` command line.

    Parameters:
        app: the ``typer.Typer`` application; add commands with ``@app.command()``.
    Returns: nothing. Not firstresult.
    """
