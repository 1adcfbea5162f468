"""Start-up: `import streambp` changes nothing and loads nothing heavy; `streambp --help` and `--version`
load neither Numba nor pyarrow nor NumPy (benchmarks/bench_startup.py times them), and commands that
plugins add still appear."""
import os
import subprocess
import sys
from pathlib import Path

import streambp
from streambp.plugins import LOAD_PLUGINS_ENV

from test_plugins import Site

ROOT = Path(streambp.__file__).resolve().parent.parent
HEAVY = ("numba", "llvmlite", "pyarrow", "numpy")

COMMAND_PLUGIN = '''import typer

from streambp import hookimpl


@hookimpl
def register_commands(app):
    @app.command("hello-startup")
    def hello():
        """Say hello from a plugin."""
        typer.echo("hello")
'''


def python(code, site=None, load=""):
    """Run code in a fresh interpreter, with only the plugins STREAMBP_LOAD_PLUGINS=load allows."""
    paths = [str(site.path)] if site else []
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER")}
    env.update(PYTHONPATH=os.pathsep.join([*paths, str(ROOT)]), **{LOAD_PLUGINS_ENV: load})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def loaded_heavy(modules):
    return sorted(m for m in modules.split() if m.split(".")[0] in HEAVY)


def test_import_streambp_is_light():
    out = python("import os, sys, streambp\n"
                 "print(' '.join(sys.modules))\n"
                 "print('OMP_WAIT_POLICY' in os.environ, 'streambp.plugins' in sys.modules)")
    modules, flags = out.splitlines()
    assert loaded_heavy(modules) == []
    assert flags == "False False"  # no environment change, no plugin manager


def test_model_and_load_still_come_from_streambp():
    assert streambp.Model is __import__("streambp.model").model.Model
    assert streambp.load is __import__("streambp.model").model.load


def run_cli(args, site=None, load=""):
    """The CLI's output and the modules loaded by then, for `streambp ARGS` in a fresh interpreter."""
    out = python("import sys\nfrom streambp.cli import app\n"
                 f"try:\n    app({args!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
                 "print('MODULES', ' '.join(sys.modules))", site, load)
    text, modules = out.rsplit("MODULES", 1)
    return text, modules


def test_help_and_version_load_nothing_heavy(tmp_path):
    site = Site(tmp_path / "site")
    site.install("streambp-hello", "1.0", [("hello", "streambp_hello_startup", "streambp")],
                 {"streambp_hello_startup": COMMAND_PLUGIN})
    text, modules = run_cli(["--help"], site, load="streambp-hello")
    for command in ("fit", "predict", "evaluate", "inspect", "plugins", "gradcheck", "report", "hello-startup"):
        assert command in text, command
    assert loaded_heavy(modules) == []
    text, modules = run_cli(["--version"], site, load="streambp-hello")
    assert text.strip() == f"streambp {streambp.__version__}"
    assert loaded_heavy(modules) == []
    # The plugin's command runs.
    assert run_cli(["hello-startup"], site, load="streambp-hello")[0].strip() == "hello"


def test_each_command_has_help_without_heavy_imports():
    for command in ("fit", "predict", "evaluate", "inspect", "plugins", "gradcheck", "report"):
        text, modules = run_cli([command, "--help"])
        assert "Usage:" in text
        assert loaded_heavy(modules) == [], command


def test_threading_layer_is_chosen_when_the_kernels_load():
    out = python("import os, numba, streambp.kernels\n"
                 "print(os.environ.get('OMP_WAIT_POLICY'), numba.config.THREADING_LAYER_PRIORITY[0])")
    assert out.split() == ["PASSIVE", "omp"]
