"""The recorder's labels and the whole evaluation on a real recorded dataset
(data/contention-1s-small, two runs of the smoke preset)."""

import json
import os
import subprocess
import sys

import pytest

import evaluate
import labels as lb
import nowcast as nc
import runs as rn
import scorers as sc

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "data", "contention-1s-small"))


def test_labels_are_reproducible_from_the_recording():
    for d in nc.experiment_dirs(DATA):
        with open(os.path.join(d, "experiment.json")) as f:
            meta = json.load(f)
        lines, solo = lb.label_lines(meta, lb.read_jsonl(os.path.join(d, "rates.jsonl")),
                                     lb.read_jsonl(os.path.join(d, "host.jsonl")))
        assert lines == lb.read_jsonl(os.path.join(d, "labels.jsonl"))
        assert solo == meta["solo_speeds"]


def test_fixture_has_every_attribution_and_a_season():
    runs, _ = rn.load_dataset(DATA)
    by = {r.id: r for r in runs}
    att = {a for p in by["e000"].pairs for a in p.attribution}
    assert att == {"sole", "idle"}  # `shared` seconds carry no pair label
    assert by["e002"].season_seconds == 60
    assert not by["e000"].drift_flagged and by["e002"].drift_flagged


def test_external_replay_equals_the_builtin_nowcast(tmp_path):
    """The evaluation of a JSONL replay (what `interference score --replay` will print)
    is the evaluation of the same scores computed inside."""
    path = tmp_path / "replay.jsonl"
    with open(path, "w") as f:
        for d in nc.experiment_dirs(DATA):
            scores = nc.all_scores(nc.read_jsonl(os.path.join(d, "samples.jsonl")), nc.experiment_interval(d))
            for line in nc.replay_lines(scores, use_tick=False):  # no "experiment": matched by time
                f.write(line + "\n")
    runs, _ = rn.load_dataset(DATA)
    res = evaluate.evaluate(runs, {"nowcast": sc.BUILTIN["nowcast"], "replay": sc.External(str(path))},
                            b=200)
    for g in res["groups"]:
        a, b = g["scorers"]["nowcast"], g["scorers"]["replay"]
        assert a == b


def test_cli_writes_markdown_and_json(tmp_path):
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    p = subprocess.run([sys.executable, os.path.join(HERE, "evaluate.py"), "--data", DATA,
                        "--scorers", "nowcast,nowcast_tick,heuristic,persistence,seasonal_naive,present_1s",
                        "--bootstrap", "100", "--json", str(out), "--markdown", str(md)],
                       capture_output=True, text=True, check=True)
    assert p.stdout == md.read_text()
    r = json.loads(out.read_text())
    names = [g["name"] for g in r["groups"]]
    assert names[:3] == ["cpu victims, all families", "cpu victims, steps", "cpu victims, recurring"]
    rec = next(g for g in r["groups"] if g["name"] == "cpu victims, recurring")
    assert "seasonal_naive" in rec["scorers"]
    steps = next(g for g in r["groups"] if g["name"] == "cpu victims, steps")
    assert "seasonal_naive" not in steps["scorers"]
    assert "solo speed drifted by more than 5% (kept, flagged): e002" in r["notes"]


def test_bad_input_is_named(tmp_path):
    bad = tmp_path / "ds" / "e000"
    bad.mkdir(parents=True)
    (bad / "experiment.json").write_text('{"id": "e000"}')
    p = subprocess.run([sys.executable, os.path.join(HERE, "evaluate.py"), "--data", str(tmp_path / "ds")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "experiment.json: not a format-2 experiment" in p.stderr
    p = subprocess.run([sys.executable, os.path.join(HERE, "evaluate.py"), "--data", DATA,
                        "--external", "broken"], capture_output=True, text=True)
    assert p.returncode != 0 and "want NAME=FILE" in p.stderr
