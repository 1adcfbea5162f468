"""The adversarial corpus of issue 13: each attack runs the real CLI in a subprocess on a small real table and
asserts its exit code, its message, that no traceback appears, and that no input or earlier output changed
(sha256 of every file before and after).

Setup (module-scoped, copied into each test's own directory): base.parquet (600 rows, float x0..x4, int
`label` with 3 classes), good.npz trained on it by the CLI, and run/, that fit's run directory.
"""
import fcntl
import json
import os
import re
import resource
import shutil
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from conftest import checksums

CLI = [sys.executable, "-c", "import sys; from streambp.cli import main; sys.argv[0] = 'streambp'; main()"]


def cli(cwd, *args, preexec_fn=None, stdout=subprocess.PIPE):
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=300, preexec_fn=preexec_fn)


def attack(d, *args, code=2, message=None, preexec_fn=None, may_change=()):
    """Run the CLI in d; assert the exit code, the message (whitespace-normalised), no traceback, and that
    every file that existed before, except those in `may_change`, is unchanged. Returns the completed process."""
    before = {k: v for k, v in checksums(d).items() if k not in may_change}
    r = cli(d, *args, preexec_fn=preexec_fn)
    output = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == code, output
    assert "Traceback" not in output, output
    if message is not None:
        assert re.search(message, output), (message, output)
    after = checksums(d)
    assert {k: after.get(k) for k in before} == before, "an input or an earlier output changed"
    return r


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("setup")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    pq.write_table(pa.table({**{f"x{j}": X[:, j] for j in range(5)}, "label": y}), d / "base.parquet")
    r = cli(d, "fit", "base.parquet", "--hidden", "4", "--epochs", "2", "--out", "good.npz", "--run-dir", "run",
            "--deterministic")
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture
def d(setup, tmp_path):
    """A directory of this test's own with base.parquet, good.npz and run/."""
    for name in ("base.parquet", "good.npz"):
        shutil.copy(setup / name, tmp_path / name)
    shutil.copytree(setup / "run", tmp_path / "run")
    return tmp_path


# --- outputs that are inputs of the same command ---

@pytest.mark.parametrize("form", ["base.parquet", "./base.parquet", "ABSOLUTE", "link.parquet", "hard.parquet"])
def test_fit_out_is_the_training_data_by_any_name(d, form):
    os.symlink("base.parquet", d / "link.parquet")
    os.link(d / "base.parquet", d / "hard.parquet")
    out = str(d / "base.parquet") if form == "ABSOLUTE" else form
    attack(d, "fit", "base.parquet", "--epochs", "1", "--out", out,
           message=rf"--out {re.escape(out)} is the training data.* of this command.*Choose another --out")


def test_fit_out_is_a_file_of_a_data_directory(d):
    (d / "parts").mkdir()
    shutil.copy(d / "base.parquet", d / "parts" / "a.parquet")
    shutil.copy(d / "base.parquet", d / "parts" / "b.parquet")
    attack(d, "fit", "parts", "--epochs", "1", "--out", "parts/b.parquet",
           message="--out parts/b.parquet is the training data")


@pytest.mark.parametrize("target,role", [("good.npz", "the model file"), ("base.parquet", "the data")])
def test_predict_out_is_an_input(d, target, role):
    attack(d, "predict", "good.npz", "base.parquet", "--out", target, message=f"--out {target} is {role} of this")


def test_bad_rows_out_is_the_training_data(d):
    attack(d, "fit", "base.parquet", "--epochs", "1", "--on-bad-rows", "skip", "--bad-rows-out", "base.parquet",
           "--out", "m.npz", message="--bad-rows-out base.parquet is the training data")
    assert not (d / "m.npz").exists()


def test_two_outputs_of_one_command_are_one_file(d):
    attack(d, "fit", "base.parquet", "--epochs", "1", "--on-bad-rows", "skip", "--bad-rows-out", "./m.npz",
           "--out", "m.npz", message="--bad-rows-out ./m.npz is also --out of this command")


def test_out_is_the_val_data(d):
    shutil.copy(d / "base.parquet", d / "val.parquet")
    attack(d, "fit", "base.parquet", "--epochs", "1", "--val", "val.parquet", "--out", "val.parquet",
           message="--out val.parquet is the --val data")


def test_out_is_the_init_model(d):
    attack(d, "fit", "base.parquet", "--epochs", "1", "--init", "good.npz", "--out", "good.npz",
           message="--out good.npz is the --init model")


def test_out_is_a_resume_checkpoint(d):
    newest = sorted(p.name for p in (d / "run").glob("checkpoint-*.npz"))[-1]
    attack(d, "fit", "--resume", "run", "--epochs", "3", "--out", f"run/{newest}",
           message=f"--out run/{newest} is the --resume checkpoint of this command")


def test_config_beside_the_model_would_overwrite_the_config_file(d):
    text = '# my settings\ndata = "base.parquet"\nepochs = 1\nhidden = [3]\n'
    (d / "X.config.toml").write_text(text)
    attack(d, "fit", "--config", "X.config.toml", "--out", "X.npz",
           message="the config file written beside the model X.config.toml is the --config file of this command"
                   ".*Choose another --out")
    assert (d / "X.config.toml").read_text() == text and not (d / "X.npz").exists()


def test_rerun_of_a_run_config_does_not_replace_the_runs_model(d):
    attack(d, "fit", "--config", "run/config.toml",
           message="sets out = 'good.npz', which exists .* Give --out to choose where this run writes")
    r = attack(d, "fit", "--config", "run/config.toml", "--out", "again.npz", code=0)
    assert (d / "again.npz").exists(), r.stderr


# --- how outputs are written ---

def test_outputs_keep_the_umask_and_a_replaced_files_mode(d):
    umask = lambda: os.umask(0o027)  # noqa: E731
    attack(d, "predict", "good.npz", "base.parquet", "--out", "p.parquet", code=0, preexec_fn=umask)
    attack(d, "fit", "base.parquet", "--epochs", "1", "--hidden", "3", "--out", "m.npz", code=0, preexec_fn=umask)
    for name in ("p.parquet", "m.npz", "m.config.toml"):
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o640, name
    os.chmod(d / "p.parquet", 0o604)
    cli(d, "predict", "good.npz", "base.parquet", "--out", "p.parquet", preexec_fn=umask)
    assert stat.S_IMODE(os.stat(d / "p.parquet").st_mode) == 0o604


def test_out_through_a_symlink_replaces_the_target_and_keeps_the_link(d):
    (d / "store").mkdir()
    (d / "store" / "p.parquet").write_bytes(b"old")
    os.symlink("store/p.parquet", d / "p.parquet")
    cli(d, "predict", "good.npz", "base.parquet", "--out", "p.parquet")
    assert os.path.islink(d / "p.parquet") and os.readlink(d / "p.parquet") == "store/p.parquet"
    assert pq.read_table(d / "store" / "p.parquet").num_rows == 600


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporaries_of_a_killed_writer_are_removed_and_live_ones_kept(d):
    stale = d / f".tmp-{dead_pid()}-abc123-p.parquet"
    live = d / f".tmp-{os.getpid()}-abc123-p.parquet"
    stale.write_bytes(b"x" * 1000)
    live.write_bytes(b"y")
    before = checksums(d)
    r = cli(d, "predict", "good.npz", "base.parquet", "--out", "p.parquet")
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and live.exists()
    assert {k: v for k, v in checksums(d).items() if k in before} == {k: v for k, v in before.items()
                                                                     if k != stale.name}


def file_size_limit(n):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n, resource.RLIM_INFINITY))


def test_disk_full_while_writing_predictions_keeps_the_old_file(d):
    cli(d, "predict", "good.npz", "base.parquet", "--out", "p.parquet")
    attack(d, "predict", "good.npz", "base.parquet", "--out", "p.parquet", preexec_fn=file_size_limit(4096),
           message=r"Cannot write --out p.parquet: .*File too large\. p.parquet is as it was\. Free space there, "
                   r"or choose another --out\.")
    assert not [p for p in d.iterdir() if p.name.startswith(".tmp-")]


def test_disk_full_while_writing_the_events_log(d):
    attack(d, "fit", "base.parquet", "--epochs", "1", "--hidden", "3", "--run-dir", "r2", "--out", "m.npz",
           preexec_fn=file_size_limit(800),  # above config.toml (~600 bytes), below the first event (~950)
           message=r"Cannot write the log file r2/events.jsonl: .*File too large")


def test_disk_full_while_writing_a_checkpoint(d):
    # 200 hidden units: a checkpoint of ~9 kB fails; the events log stays below the limit
    attack(d, "fit", "base.parquet", "--epochs", "1", "--hidden", "200", "--run-dir", "r2", "--out", "m.npz",
           preexec_fn=file_size_limit(4000), message=r"Cannot write the checkpoint r2/checkpoint-e0001-\S+: File "
                                                     r"too large\. Free space there, or choose another --run-dir\.")
    assert not (d / "m.npz").exists() and not [p for p in (d / "r2").iterdir() if p.name.startswith(".tmp-")]


def test_out_that_is_a_directory(d):
    (d / "adir").mkdir()
    attack(d, "predict", "good.npz", "base.parquet", "--out", "adir", message="Cannot write --out adir: it is a "
                                                                                "directory. Choose another --out.")
    attack(d, "fit", "base.parquet", "--epochs", "1", "--out", "adir", message="Cannot write --out adir: it is a "
                                                                                 "directory")
    attack(d, "report", "run", "--out", "base.parquet", message="--out base.parquet is not a directory")


def test_run_dir_that_is_a_file(d):
    attack(d, "fit", "base.parquet", "--epochs", "1", "--run-dir", "base.parquet", "--out", "m.npz",
           message="--run-dir base.parquet is not a directory")


def test_a_second_fit_on_a_locked_run_dir_is_refused(d):
    (d / "shared").mkdir()
    fd = os.open(d / "shared", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        attack(d, "fit", "base.parquet", "--epochs", "1", "--run-dir", "shared", "--out", "m.npz",
               message=f"--run-dir shared is in use by another streambp process \\(pid {os.getpid()}\\)")
        attack(d, "fit", "base.parquet", "--epochs", "1", "--run-dir", "other", "--out", "m.npz", code=0)
    finally:
        os.close(fd)
    attack(d, "fit", "base.parquet", "--epochs", "1", "--run-dir", "shared", "--out", "m2.npz", code=0)


# --- checkpoints ---

def resumed(d):
    """What a resumed run rewrites: its events log and config, and (pruning, replacing) its checkpoints."""
    return {"run/events.jsonl", "run/config.toml", *(f"run/{p.name}" for p in (d / "run").glob("checkpoint-*"))}


def newest(d):
    return sorted((d / "run").glob("checkpoint-*.npz"))[-1]


@pytest.mark.parametrize("damage", ["truncated", "zero-byte", "garbage", "nan", "wrong-size"])
def test_resume_falls_back_to_the_newest_usable_checkpoint(d, damage):
    bad, good = sorted((d / "run").glob("checkpoint-*.npz"))[-1:-3:-1]
    data = bad.read_bytes()
    if damage == "truncated":
        bad.write_bytes(data[:len(data) // 2])
    elif damage == "zero-byte":
        bad.write_bytes(b"")
    elif damage == "garbage":
        bad.write_bytes(b"\x93NUMPY" + os.urandom(300))
    else:
        with np.load(bad) as z:
            arrays = dict(z)
        arrays["theta"] = np.full_like(arrays["theta"], np.nan) if damage == "nan" else arrays["theta"][:-1]
        np.savez(bad, **arrays)
    r = attack(d, "fit", "--resume", "run", "--epochs", "3", "--out", "m.npz", code=0, may_change=resumed(d),
               message=f"Checkpoint run/{bad.name} is unusable .*; resuming from an earlier one\\. Resuming from "
                       f"run/{good.name} \\(the end of epoch 1")
    assert "pickle" not in r.stderr


def test_resume_with_no_usable_checkpoint(d):
    for p in (d / "run").glob("checkpoint-*.npz"):
        p.write_bytes(b"PK\x03\x04 not really")
    r = attack(d, "fit", "--resume", "run", "--out", "m.npz",
               message="No usable checkpoint in run: checkpoint-e0002-.*: not a readable .npz archive; "
                       "checkpoint-e0001-")
    assert "pickle" not in r.stderr


def test_resume_says_where_it_continues_and_that_a_finished_run_is_finished(d):
    last = newest(d).name
    attack(d, "fit", "--resume", "run", "--out", "m.npz", code=0, may_change=resumed(d),
           message=f"Resuming from run/{last} \\(the end of epoch 2, step .*That run has finished its 2 epochs: "
                   "nothing to train.*resume with a larger --epochs")
    assert np.array_equal(np.load(d / "m.npz")["theta"], np.load(d / "good.npz")["theta"])


def test_divergence_never_names_a_nan_checkpoint_the_last_good_one(d):
    bad, good = sorted((d / "run").glob("checkpoint-*.npz"))[-1:-3:-1]
    with np.load(bad) as z:
        arrays = dict(z)
    arrays["theta"] = np.full_like(arrays["theta"], np.nan)
    np.savez(bad, **arrays)
    attack(d, "fit", "--resume", "run", "--epochs", "3", "--lr", "1e300", "--out", "m.npz", code=3,
           may_change=resumed(d),
           message=f"Training diverged in epoch 2 .* The last good checkpoint is run/{good.name};")


# --- model files that lie ---

def tampered(d, name, meta=None, **arrays):
    """A copy of good.npz with metadata keys replaced (None: removed) and arrays replaced."""
    with np.load(d / "good.npz") as z:
        content = dict(z)
    m = json.loads(content["metadata"].tobytes())
    for k, v in (meta or {}).items():
        m[k] = v
    content["metadata"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    content.update(arrays)
    np.savez(d / name, **content)
    return name


def huge_header(d):
    """theta.npy declaring 10**11 float32 values (and sizes that need them) but holding 16 bytes."""
    meta = json.loads(np.load(d / "good.npz")["metadata"].tobytes())
    meta["sizes"] = [5, (10 ** 11 - 3) // 9, 3]
    with zipfile.ZipFile(d / "huge.npz", "w") as z:
        with z.open("theta.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 11,)})
            f.write(b"\0" * 16)
        with z.open("metadata.npy", "w") as f:
            np.lib.format.write_array(f, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return "huge.npz"


TAMPERING = {
    "short scaler": lambda d: tampered(d, "t.npz", {"standardized": True}, scaler_mean=np.zeros(3, np.float32),
                                       scaler_inv_std=np.ones(3, np.float32)),
    "nan weights": lambda d: tampered(d, "t.npz", theta=np.full(np.load(d / "good.npz")["theta"].shape, np.nan,
                                                                np.float32)),
    "inf scaler": lambda d: tampered(d, "t.npz", {"standardized": True}, scaler_mean=np.full(5, np.inf, np.float32),
                                     scaler_inv_std=np.ones(5, np.float32)),
    "zero inv_std": lambda d: tampered(d, "t.npz", {"standardized": True}, scaler_mean=np.zeros(5, np.float32),
                                       scaler_inv_std=np.zeros(5, np.float32)),
    "float16 theta": lambda d: tampered(d, "t.npz", theta=np.load(d / "good.npz")["theta"].astype(np.float16)),
    "int theta": lambda d: tampered(d, "t.npz", theta=np.load(d / "good.npz")["theta"].astype(np.int32)),
    "2-D theta": lambda d: tampered(d, "t.npz", theta=np.load(d / "good.npz")["theta"][None, :]),
    "class count": lambda d: tampered(d, "t.npz", {"classes": [0, 1]}),
    "feature count": lambda d: tampered(d, "t.npz", {"features": ["x0", "x1"]}),
    "repeated classes": lambda d: tampered(d, "t.npz", {"classes": [0, 1, 1]}),
    "string classes, int label_type": lambda d: tampered(d, "t.npz", {"classes": ["a", "b", "c"]}),
    "sizes of strings": lambda d: tampered(d, "t.npz", {"sizes": ["5", "4", "3"]}),
    "negative size": lambda d: tampered(d, "t.npz", {"sizes": [5, -4, 3]}),
    "features not a list": lambda d: tampered(d, "t.npz", {"features": "x0,x1,x2,x3,x4"}),
    "label_type unknown": lambda d: tampered(d, "t.npz", {"label_type": "complex128"}),
    "1e11-float header": huge_header,
}


# every tampering through predict; evaluate, --init and inspect load through the same validator
CASES = [(name, "predict") for name in TAMPERING] + [(name, command) for name in ("short scaler", "1e11-float header")
                                                     for command in ("evaluate", "init", "inspect")]


@pytest.mark.parametrize("attack_name,command", CASES)
def test_a_tampered_model_is_refused_by_every_loader(d, attack_name, command):
    name = TAMPERING[attack_name](d)
    args = {"predict": ["predict", name, "base.parquet", "--out", "p.parquet"],
            "evaluate": ["evaluate", name, "base.parquet"],
            "init": ["fit", "base.parquet", "--init", name, "--epochs", "1", "--out", "m.npz"],
            "inspect": ["inspect", name]}[command]
    attack(d, *args, message=f"{name} is not a (usable streambp model: |streambp model file )")
    assert not (d / "p.parquet").exists() and not (d / "m.npz").exists()


def test_a_tampered_checkpoint_model_section_is_refused_like_a_model_file(d):
    for p in (d / "run").glob("checkpoint-*.npz"):
        with np.load(p) as z:
            arrays = dict(z)
        state = json.loads(arrays["state"].tobytes())
        state["model"]["classes"] = [0, 1]
        arrays["state"] = np.frombuffer(json.dumps(state).encode(), np.uint8)
        np.savez(p, **arrays)
    attack(d, "fit", "--resume", "run", "--epochs", "3", "--out", "m.npz",
           message=r"No usable checkpoint in run: checkpoint-e0002-\S+: it has 2 classes for 3 outputs; "
                   r"checkpoint-e0001-\S+: it has 2 classes for 3 outputs\. Start a new run without --resume\.")


# --- predict, evaluate and report ---

def test_predict_id_named_like_an_output_column(d):
    t = pq.read_table(d / "base.parquet")
    pq.write_table(t.append_column("prediction", pa.array(np.arange(600))), d / "ids.parquet")
    attack(d, "predict", "good.npz", "ids.parquet", "--id", "prediction", "--out", "p.parquet",
           message="--id 'prediction' has the name of an output column .*Rename the column in the data")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "arrow"])
def test_predict_id_that_is_also_a_feature(d, fmt):
    t = pq.read_table(d / "base.parquet")
    if fmt == "csv":
        pcsv.write_csv(t, d / "in.csv")
    elif fmt == "arrow":
        feather.write_feather(t, d / "in.arrow")
    else:
        shutil.copy(d / "base.parquet", d / "in.parquet")
    attack(d, "predict", "good.npz", f"in.{fmt}", "--id", "x0", "--out", "p.parquet", code=0)
    out = pq.read_table(d / "p.parquet")
    assert out.column_names == ["x0", "prediction", "prob_0", "prob_1", "prob_2"]
    np.testing.assert_allclose(out["x0"].to_numpy(), t["x0"].to_numpy(), rtol=1e-6)


def test_evaluate_string_labels_against_an_integer_model(d):
    t = pq.read_table(d / "base.parquet")
    labels = pa.array([f"c{v}" for v in t["label"].to_pylist()])
    pq.write_table(t.set_column(5, "label", labels), d / "strings.parquet")
    attack(d, "evaluate", "good.npz", "strings.parquet",
           message="label column 'label' holds string values, but the model's classes are int64")


@pytest.mark.parametrize("labels", [[False, True, True], [0.5, 1.0, 2.0]], ids=["bool", "float"])
def test_evaluate_a_model_of_boolean_or_float_labels_on_its_own_data(d, labels):
    # Labels may be booleans or floating-point codes; evaluate took only integers and strings and refused
    # such a model on the very data it was trained on.
    t = pq.read_table(d / "base.parquet")
    column = pa.array([labels[v] for v in t["label"].to_pylist()])
    pq.write_table(t.set_column(5, "label", column), d / "typed.parquet")
    attack(d, "fit", "typed.parquet", "--epochs", "1", "--hidden", "3", "--out", "typed.npz", code=0)
    r = attack(d, "evaluate", "typed.npz", "typed.parquet", "--json", code=0)
    m = json.loads(r.stdout)
    assert m["classes"] == sorted(set(labels)) and m["n_rows"] == 600 and m["unknown_labels"] == 0
    attack(d, "evaluate", "typed.npz", "base.parquet",
           message=f"label column 'label' holds int64 values, but the model's classes are {column.type}")


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
@pytest.mark.parametrize("twice", ["x1", "label", "extra"])
def test_duplicate_column_names_in_parquet_and_arrow(d, fmt, twice):
    # A name given twice made pyarrow's schema.field() raise KeyError (a traceback) in the column roles of
    # fit and in predict/evaluate, before the duplicate-name check was reached.
    t = pq.read_table(d / "base.parquet")
    t = t.append_column(twice, t.column(1 if twice != "label" else 5))
    if twice == "extra":
        t = t.append_column("extra", t.column(2))
    path = d / f"dup.{fmt}"
    pq.write_table(t, path) if fmt == "parquet" else feather.write_feather(t, path)
    message = f"dup.{fmt} has two columns named '{twice}'; rename one."
    attack(d, "fit", path.name, "--epochs", "1", "--out", "m.npz", message=message)
    assert not (d / "m.npz").exists()
    attack(d, "predict", "good.npz", path.name, "--out", "p.parquet", message=message)
    attack(d, "evaluate", "good.npz", path.name, message=message)


def test_evaluate_into_a_closed_pipe_exits_0(d):
    for extra in ([], ["--json"]):
        r, w = os.pipe()
        os.close(r)
        p = subprocess.run([*CLI, "evaluate", "good.npz", "base.parquet", *extra], cwd=d, stdout=w,
                           stderr=subprocess.PIPE, text=True, timeout=300)
        os.close(w)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr


def test_report_without_matplotlib_names_what_to_install(d):
    r = subprocess.run([sys.executable, "-c", "import sys; sys.modules['matplotlib'] = None; "
                        "from streambp.cli import main; sys.argv[0] = 'streambp'; main()", "report", "run"],
                       cwd=d, capture_output=True, text=True, timeout=300)
    text = " ".join(r.stderr.split())
    assert r.returncode == 2 and "python -m pip install matplotlib" in text and "streambp[" not in text, text
    assert not (d / "run" / "report").exists()


def test_report_survives_a_bad_byte_in_events(d):
    with open(d / "run" / "events.jsonl", "rb+") as f:
        lines = f.read().split(b"\n")
        lines[1] = lines[1].replace(b'"step"', b'"st\xffep"', 1)
        f.seek(0)
        f.write(b"\n".join(lines))
    attack(d, "report", "run", code=0)
    assert (d / "run" / "report" / "index.html").exists()


def test_the_guard_covers_one_fit_and_leaks_into_no_later_one(d):
    """Python API: what one fit() read is not protected in the next one (a process-wide set would be)."""
    from streambp.train import FitConfig, fit

    shutil.copy(d / "base.parquet", d / "other.parquet")
    fit(FitConfig(data=str(d / "base.parquet"), hidden=[3], epochs=1, out=str(d / "a.npz"), loggers=[]))
    fit(FitConfig(data=str(d / "other.parquet"), hidden=[3], epochs=1, out=str(d / "base.parquet"), loggers=[]))
    assert np.load(d / "base.parquet")["theta"].size == 5 * 3 + 3 + 3 * 3 + 3  # now a model file, as asked


def test_terminal_escapes_in_names_and_values_are_shown_escaped(d):
    # a file name that would set the terminal's title and clear the screen if printed raw
    r = attack(d, "fit", "\x1b]0;pwned\x07\x1b[2J.parquet", "--out", "m.npz", message=r"No files match|does not exist")
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr and "\\x1b]0;pwned\\x07\\x1b[2J" in r.stderr
    # a column name holding escapes, named in the column table a fit prints
    pq.write_table(pa.table({"\x1b[31mred": [1.0, 2.0, 3.0, 4.0] * 10, "label": [0, 1] * 20}), d / "esc.parquet")
    r = attack(d, "fit", "esc.parquet", "--epochs", "1", "--out", "e.npz", code=0)
    assert "\x1b" not in r.stdout and "\\x1b[31mred" in r.stdout


def test_a_value_beyond_float32_is_named_as_such_and_no_warning_leaks(d):
    x = np.zeros(60)
    x[17] = 1e300
    pq.write_table(pa.table({"x": x, "label": np.arange(60) % 2}), d / "huge.parquet")
    r = attack(d, "fit", "huge.parquet", "--out", "m.npz",
               message=r"feature 'x' is infinite \(or beyond float32's range\) in row 17")
    assert "Warning" not in r.stderr


def test_predict_with_text_in_a_boolean_column_and_a_binary_one(d):
    t = pq.read_table(d / "base.parquet")
    pq.write_table(t.append_column("flag", pa.array([i % 3 == 0 for i in range(600)])), d / "flags.parquet")
    attack(d, "fit", "flags.parquet", "--epochs", "1", "--hidden", "3", "--out", "flags.npz", code=0)
    text = t.append_column("flag", pa.array(["true", "no idea", None] * 200))
    pq.write_table(text, d / "text.parquet")
    attack(d, "predict", "flags.npz", "text.parquet", "--out", "p.parquet", code=0)
    assert pq.read_table(d / "p.parquet").num_rows == 600
    pq.write_table(t.append_column("flag", pa.array([b"\xff"] * 600)), d / "binary.parquet")
    attack(d, "predict", "flags.npz", "binary.parquet", "--out", "p2.parquet",
           message="column 'flag' has type binary, which the model cannot use as a categorical feature")


def test_an_exploding_but_finite_loss_is_divergence(d):
    # --lr 1e30 with plain SGD: the loss jumps to ~1e29, finite; it used to train on "successfully"
    attack(d, "fit", "base.parquet", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "2", "--hidden", "3",
           "--out", "boom.npz", code=3, message=r"diverged .* \(NaN, inf or exploding loss\)")
    assert not (d / "boom.npz").exists()
