"""The events of a fit, one name each for loggers and plugin hooks: a logger's method `step_end(info)`
is called with the same info as the hook `step_end(info)`, then the hook itself (see hookspecs.py)."""
from .plugins import blame, call_hook
from .registry import logger_owner

EVENTS = ("fit_start", "step_end", "epoch_end", "fit_end")


def emit(logs, event, info):
    """Call the method `event` (one of EVENTS) of each logger that has it, then the hook `event` with info."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; the events are {', '.join(EVENTS)}")
    for log in logs:
        method = getattr(log, event, None)
        if method is None:
            continue
        try:
            method(info)
        except Exception:
            name, owner = logger_owner(log)
            with blame(owner, f"in the {event} method of its logger {name!r}"):
                raise
    call_hook(event, info=info)
