"""The built-in jsonl and csv loggers: through `streambp fit --logger`, and their file handling."""
import csv
import json
import math

import numpy as np
import pytest

import streambp
from streambp.default_plugins.loggers import CsvLogger, JsonlLogger
from streambp.registry import loggers

from test_plugins import FAST, invoke


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_registered():
    entries = loggers.entries()
    assert entries["jsonl"][0] is JsonlLogger
    assert entries["csv"][0] is CsvLogger


def test_jsonl_through_fit(tmp_path, blob_file, monkeypatch):
    log = tmp_path / "run.jsonl"
    monkeypatch.setenv("STREAMBP_LOG_JSONL", str(log))
    out = tmp_path / "m.npz"
    result = invoke("fit", blob_file, "--out", out, "--epochs", 2, "--val", blob_file, "--logger", "jsonl",
                    *FAST)
    assert "epoch 1/2" not in result.output  # only the loggers asked for
    events = read_jsonl(log)
    names = [e["event"] for e in events if e["event"] != "step"]
    assert names == ["fit_start", "epoch_end", "epoch_end", "fit_end"]
    start = events[0]
    assert start["sizes"] == [5, 4, 3] and start["rows"] == 600 and start["classes"] == [0, 1, 2]
    epochs = [e for e in events if e["event"] == "epoch_end"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert {"train_loss", "val_loss", "val_accuracy", "seconds", "rows_per_s", "time"} <= set(e)
    assert events[-1]["out"] == str(out)
    assert [h["epoch"] for h in events[-1]["history"]] == [1, 2]
    assert all(a["time"] <= b["time"] for a, b in zip(events, events[1:]))


def test_csv_through_fit(tmp_path, blob_file, monkeypatch):
    log = tmp_path / "run.csv"
    monkeypatch.setenv("STREAMBP_LOG_CSV", str(log))
    out = tmp_path / "m.npz"
    invoke("fit", blob_file, "--out", out, "--epochs", 3, "--val", blob_file, "--logger", "csv", *FAST)
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "epochs", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                             "seconds", "rows_per_s"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for r in rows:
        assert int(r["epochs"]) == 3
        assert 0 <= float(r["val_accuracy"]) <= 1
        assert float(r["train_loss"]) > 0 and float(r["seconds"]) >= 0
    history = streambp.load(out).training["history"]
    assert [float(r["train_loss"]) for r in rows] == [h["train_loss"] for h in history]


def test_csv_without_val_has_no_val_columns(tmp_path, blob_file, monkeypatch):
    log = tmp_path / "run.csv"
    monkeypatch.setenv("STREAMBP_LOG_CSV", str(log))
    invoke("fit", blob_file, "--out", tmp_path / "m.npz", "--epochs", 1, "--logger", "csv", *FAST)
    header = log.read_text().splitlines()[0]
    assert header == "epoch,epochs,step,train_loss,train_accuracy,seconds,rows_per_s"


def test_several_loggers(tmp_path, blob_file, monkeypatch):
    monkeypatch.setenv("STREAMBP_LOG_JSONL", str(tmp_path / "a.jsonl"))
    monkeypatch.setenv("STREAMBP_LOG_CSV", str(tmp_path / "a.csv"))
    result = invoke("fit", blob_file, "--out", tmp_path / "m.npz", "--epochs", 1, "--logger", "console",
                    "--logger", "jsonl", "--logger", "csv", *FAST)
    assert "epoch 1/1" in result.output
    assert read_jsonl(tmp_path / "a.jsonl")[-1]["event"] == "fit_end"
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 2


def test_default_paths_next_to_model(tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMBP_LOG_JSONL", raising=False)
    monkeypatch.delenv("STREAMBP_LOG_CSV", raising=False)
    out = tmp_path / "models" / "m.npz"
    out.parent.mkdir()
    j, c = JsonlLogger(), CsvLogger()
    for log in (j, c):
        log.fit_start({"out": str(out)})
        log.epoch_end({"epoch": 1, "epochs": 1, "train_loss": 0.5, "seconds": 1.0, "rows_per_s": 10.0})
        log.fit_end({"out": str(out)})
    assert j.path == str(tmp_path / "models" / "m.log.jsonl")
    assert c.path == str(tmp_path / "models" / "m.log.csv")
    assert [e["event"] for e in read_jsonl(tmp_path / "models" / "m.log.jsonl")] == \
        ["fit_start", "epoch_end", "fit_end"]


def test_default_paths_without_model(tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMBP_LOG_JSONL", raising=False)
    monkeypatch.delenv("STREAMBP_LOG_CSV", raising=False)
    monkeypatch.chdir(tmp_path)
    for log in (JsonlLogger(), CsvLogger()):
        log.fit_start({"out": None})
        log.epoch_end({"epoch": 1})
        log.fit_end({})
    assert (tmp_path / "streambp.log.jsonl").exists()
    assert (tmp_path / "streambp.log.csv").read_text().splitlines() == ["epoch", "1"]


def test_explicit_path_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMBP_LOG_JSONL", str(tmp_path / "env.jsonl"))
    log = JsonlLogger(path=tmp_path / "given.jsonl")
    log.fit_start({"out": str(tmp_path / "m.npz")})
    log.fit_end({})
    assert (tmp_path / "given.jsonl").exists() and not (tmp_path / "env.jsonl").exists()


def test_flushed_per_event(tmp_path):
    path = tmp_path / "live.jsonl"
    log = JsonlLogger(path=path)
    log.fit_start({"rows": 3})
    assert len(read_jsonl(path)) == 1  # readable while training runs
    log.step_end({"loss": 0.25})
    assert read_jsonl(path)[-1]["loss"] == 0.25
    c = CsvLogger(path=tmp_path / "live.csv")
    c.fit_start({})
    c.epoch_end({"epoch": 1, "train_loss": 0.5})
    assert (tmp_path / "live.csv").read_text().splitlines() == ["epoch,train_loss", "1,0.5"]
    c.epoch_end({"epoch": 2, "train_loss": 0.25})
    assert (tmp_path / "live.csv").read_text().splitlines()[-1] == "2,0.25"
    log.fit_end({})
    c.fit_end({})


def test_jsonl_writes_strict_json(tmp_path):
    path = tmp_path / "odd.jsonl"
    log = JsonlLogger(path=path)
    log.step_end({"loss": math.nan, "rate": math.inf, "n": np.int64(3), "x": np.float32(0.5),
              "classes": ["a", np.int32(2)], "nested": {"v": -math.inf}, "obj": object})
    log.close()
    line = path.read_text().strip()
    event = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert event["loss"] is None and event["rate"] is None and event["nested"] == {"v": None}
    assert event["n"] == 3 and event["x"] == 0.5 and event["classes"] == ["a", 2]
    assert isinstance(event["obj"], str)


def test_logs_are_overwritten(tmp_path):
    path = tmp_path / "again.jsonl"
    for run in range(2):
        log = JsonlLogger(path=path)
        log.fit_start({"run": run})
        log.fit_end({})
    assert [e["run"] for e in read_jsonl(path) if e["event"] == "fit_start"] == [1]


def test_jsonl_append_starts_a_new_line_after_a_cut_one(tmp_path):
    """A killed run can leave half a line; the resumed run's events start on a line of their own."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "fit_start"}\n{"event": "st')
    log = JsonlLogger(path, append=True)
    log.fit_start({"rows": 3})
    log.close()
    lines = path.read_text().splitlines()
    assert lines[:2] == ['{"event": "fit_start"}', '{"event": "st'] and json.loads(lines[2])["rows"] == 3
