"""`streambp report`: parsing a run directory's events.jsonl, the series plotted, the images and the HTML page."""
import json
import sys

import numpy as np
import pytest

from conftest import invoke, run
from streambp.errors import StreambpError
from streambp.report import read_run, write_report

CLASSES = ["cat", "dog", "bird & <co>"]
CONFIG = 'data = "a<b.parquet"\nepochs = 3\nhidden = [8]\n'


def step(t, epoch, n, loss, accuracy):
    return {"event": "step", "time": t, "epoch": epoch, "epochs": 3, "step": n, "rows": n * 8, "rows_total": 320,
            "loss": loss, "accuracy": accuracy, "rows_per_s": 1000.0 + n}


def epoch_end(t, epoch, n, train_loss, val_accuracy=None, confusion=None):
    e = {"event": "epoch_end", "time": t, "epoch": epoch, "epochs": 3, "step": n, "train_loss": train_loss,
         "train_accuracy": 0.5 + epoch / 10, "seconds": 2.0, "rows_per_s": 150.0 + 10 * epoch}
    if val_accuracy is not None:
        e.update(val_loss=1.0 - val_accuracy, val_accuracy=val_accuracy, val_confusion=confusion)
    return e


def fit_start(t, resumed):
    return {"event": "fit_start", "time": t, "sizes": [4, 8, 3], "rows": 320, "epochs": 3, "out": "m.npz",
            "config": {"data": "a<b.parquet"}, "classes": CLASSES, "threads": 4, "files": 1, "resumed": resumed}


def resumed_run(tmp_path, val=True):
    """Epochs 1 and 2, a crash before epoch 2's checkpoint, a resume from epoch 1 (at step 40) that redoes
    epoch 2 and does epoch 3."""
    v = (lambda acc, c=None: {"val_accuracy": acc, "confusion": c}) if val else (lambda acc, c=None: {})
    events = [
        fit_start(1000.0, False),
        step(1001, 1, 16, 1.1, 0.4), step(1002, 1, 32, 1.0, 0.45), epoch_end(1003, 1, 40, 0.95, **v(0.6123)),
        step(1004, 2, 48, 0.9, 0.5), step(1005, 2, 64, 0.85, 0.55), epoch_end(1006, 2, 80, 0.8, **v(0.7011)),
        step(1007, 3, 96, 0.7, 0.6),
        fit_start(2000.0, True),
        step(2001, 2, 56, 0.88, 0.52), step(2002, 2, 72, 0.84, 0.56), epoch_end(2003, 2, 80, 0.79, **v(0.7345)),
        step(2004, 3, 96, 0.7, 0.61), step(2005, 3, 112, 0.66, 0.63),
        epoch_end(2006, 3, 120, 0.6, **v(0.8456, [[10, 1, 0], [2, 9, 1], [0, 3, 12]])),
        {"event": "fit_end", "time": 2007.0, "out": "m.npz", "seconds": 7.0, "history": [], "bad_rows": 0},
    ]
    d = tmp_path / "run"
    d.mkdir()
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (d / "config.toml").write_text(CONFIG)
    (d / "checkpoint-000003.npz").write_bytes(b"ignored")
    return d


def test_read_run_keeps_the_latest_of_redone_steps_and_epochs(tmp_path):
    r = read_run(resumed_run(tmp_path))
    assert len(r.starts) == 2 and [s["resumed"] for s in r.starts] == [False, True]
    assert [s["step"] for s in r.steps] == [16, 32, 48, 56, 72, 96, 112]
    assert [s["loss"] for s in r.steps] == [1.1, 1.0, 0.9, 0.88, 0.84, 0.7, 0.66]
    assert [e["epoch"] for e in r.epochs] == [1, 2, 3]
    assert [e["val_accuracy"] for e in r.epochs] == [0.6123, 0.7345, 0.8456]
    assert r.seconds == pytest.approx(7 + 7)  # 1000..1007 and 2000..2007
    assert r.config == CONFIG


def test_write_report_writes_the_page_images_and_series(tmp_path):
    import matplotlib.image

    d = resumed_run(tmp_path)
    index = write_report(d)
    out = d / "report"
    assert index == str(out / "index.html")
    for name in ("loss.png", "accuracy.png", "throughput.png", "confusion.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100, name
        assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10, name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]

    s = json.loads((out / "series.json").read_text())
    # the logged steps' lines break (None) at each epoch and resume: they are averages over the epoch so far
    assert s["loss"]["train (logged steps)"] == {"x": [16, 32, None, 48, None, 56, 72, None, 96, 112],
                                                 "y": [1.1, 1.0, None, 0.9, None, 0.88, 0.84, None, 0.7, 0.66]}
    assert s["loss"]["train (epoch)"] == {"x": [40, 80, 120], "y": [0.95, 0.79, 0.6]}
    assert s["loss"]["validation (epoch)"]["x"] == [40, 80, 120]
    assert s["loss"]["validation (epoch)"]["y"] == pytest.approx([1 - 0.6123, 1 - 0.7345, 1 - 0.8456])
    assert s["accuracy"]["train (logged steps)"]["y"] == [0.4, 0.45, None, 0.5, None, 0.52, 0.56, None, 0.61, 0.63]
    assert s["accuracy"]["train (epoch)"]["y"] == pytest.approx([0.6, 0.7, 0.8])
    assert s["accuracy"]["validation (epoch)"] == {"x": [40, 80, 120], "y": [0.6123, 0.7345, 0.8456]}
    # x: seconds since the first fit_start
    assert s["throughput"]["rows/s so far (logged steps)"] == {
        "x": [1, 2, None, 4, None, 1001, 1002, None, 1004, 1005],
        "y": [1016, 1032, None, 1048, None, 1056, 1072, None, 1096, 1112]}
    assert s["throughput"]["rows/s (epoch)"] == {"x": [3, 1003, 1006], "y": [160, 170, 180]}
    assert s["epoch_ends"] == [3, 1003, 1006]
    assert s["confusion"] == {"epoch": 3, "classes": CLASSES, "matrix": [[10, 1, 0], [2, 9, 1], [0, 3, 12]]}

    page = (out / "index.html").read_text()
    assert "<tr><td>status</td><td>finished</td></tr>" in page
    for value in ("0.6123", "0.7345", "0.8456", "0.9500", "0.7900", "0.6000", "4-8-3", "3 of 3"):
        assert value in page, value
    assert "0.7011" not in page  # the redone epoch 2 replaced it
    assert "bird &amp; &lt;co&gt;" in page and "<co>" not in page
    assert 'data = &quot;a&lt;b.parquet&quot;' in page and "a<b" not in page
    assert str(d) in page
    for name in ("loss.png", "accuracy.png", "throughput.png", "confusion.png"):
        assert f'<img src="{name}"' in page


def test_out_dir_and_run_without_validation(tmp_path):
    d = resumed_run(tmp_path, val=False)
    index = write_report(d, tmp_path / "elsewhere")
    assert index == str(tmp_path / "elsewhere" / "index.html")
    names = sorted(p.name for p in (tmp_path / "elsewhere").iterdir())
    assert names == ["accuracy.png", "index.html", "loss.png", "series.json", "throughput.png"]
    page = (tmp_path / "elsewhere" / "index.html").read_text()
    assert "No confusion matrix: the run has no validation data" in page and "confusion.png" not in page
    assert json.loads((tmp_path / "elsewhere" / "series.json").read_text())["confusion"] is None


def test_run_without_a_finished_epoch_and_a_line_being_written(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    events = [fit_start(1000.0, False), step(1001, 1, 16, 1.1, 0.4), step(1002, 1, 32, 1.0, 0.45)]
    # the last line is still being written: ignored, not an error
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + '{"event": "st')
    page = open(write_report(d)).read()
    assert "No epoch has finished yet." in page and "No confusion matrix: no epoch has finished yet" in page
    assert "not finished (still running, interrupted or stopped)" in page
    s = json.loads((d / "report" / "series.json").read_text())
    assert s["loss"]["train (logged steps)"] == {"x": [16, 32], "y": [1.1, 1.0]}
    assert s["loss"]["train (epoch)"] == {"x": [], "y": []}


def test_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    # not "streambp[report]": in an environment without this streambp that resolves to PyPI's unrelated streambp 1.x
    with pytest.raises(StreambpError, match=r"python -m pip install matplotlib$"):
        write_report(resumed_run(tmp_path))
    assert not (tmp_path / "run" / "report").exists()


def assert_user_error(result, *parts):
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    for part in parts:
        assert part in result.output, (part, result.output)


def test_errors(tmp_path):
    assert_user_error(run("report", tmp_path / "nope"), str(tmp_path / "nope"), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_user_error(run("report", tmp_path / "empty"), str(tmp_path / "empty" / "events.jsonl"),
                      "Is this a run directory")
    d = resumed_run(tmp_path)
    lines = (d / "events.jsonl").read_text().splitlines(keepends=True)
    (d / "events.jsonl").write_text("".join(lines[:4] + ["{not json\n"] + lines[4:]))
    assert_user_error(run("report", d), str(d / "events.jsonl"), "line 5 is not JSON")
    assert not (d / "report").exists()


def test_fit_then_report_mnist(tmp_path, mnist_train):
    from streambp.evaluate import evaluate
    from streambp.model import load
    from streambp.registry import open_source

    invoke("fit", mnist_train, "--hidden", "16", "--epochs", "2", "--val-fraction", "0.2", "--run-dir",
           tmp_path / "run", "--out", tmp_path / "m.npz", "--batch-size", "64")
    result = invoke("report", tmp_path / "run")
    assert result.output.strip() == str(tmp_path / "run" / "report" / "index.html")
    s = json.loads((tmp_path / "run" / "report" / "series.json").read_text())
    val = s["accuracy"]["validation (epoch)"]
    assert len(val["x"]) == 2 and val["x"][0] < val["x"][1] and all(a > 0.5 for a in val["y"])
    assert len(s["loss"]["train (logged steps)"]["x"]) > 0
    m = s["confusion"]["matrix"]
    assert s["confusion"]["epoch"] == 2 and np.shape(m) == (10, 10)
    # the last epoch's model is the one written: its validation confusion matrix is the one plotted
    expected = evaluate(load(tmp_path / "m.npz"), open_source(str(mnist_train)), "label", split=(0.2, True))
    assert np.sum(m) == expected["n_rows"] and m == expected["confusion_matrix"]
    assert (tmp_path / "run" / "report" / "confusion.png").read_bytes().startswith(b"\x89PNG")


def test_the_report_says_which_epochs_weights_early_stopping_kept(tmp_path, blob_file):
    from streambp.model import load

    # a rate so large that the validation loss rises after the first epochs: an earlier epoch is kept
    invoke("fit", blob_file, "--hidden", "8", "--epochs", "12", "--optimizer", "sgd", "--lr", "50",
           "--no-standardize", "--val-fraction", "0.3", "--early-stopping", "2", "--run-dir", tmp_path / "run",
           "--out", tmp_path / "m.npz")
    training = load(tmp_path / "m.npz").training
    best = training["best_epoch"]
    assert best < len(training["history"])  # not simply the last epoch
    invoke("report", tmp_path / "run")
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert f"epoch {best} (lowest validation loss" in page


def test_help():
    assert "report" in invoke("--help").output
    assert "--out" in invoke("report", "--help").output


def test_a_line_cut_by_a_killed_run_before_its_resume_is_skipped(tmp_path):
    d = resumed_run(tmp_path)
    lines = (d / "events.jsonl").read_text().splitlines(keepends=True)
    second_start = [i for i, line in enumerate(lines) if '"fit_start"' in line][1]
    (d / "events.jsonl").write_text("".join(lines[:second_start] + ['{"event": "step", "ti\n'] + lines[second_start:]))
    assert len(read_run(d).starts) == 2
    (tmp_path / "again").mkdir()
    assert read_run(d).epochs == read_run(resumed_run(tmp_path / "again")).epochs
