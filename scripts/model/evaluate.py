#!/usr/bin/env python3
"""One evaluation protocol for every Contention Score scorer, on 1 s labels.

    evaluate.py --data DIR [--scorers nowcast,heuristic,...] [--external NAME=FILE ...]
                [--thresholds 15,25,40] [--main-threshold 25] [--bootstrap 2000]
                [--seed 1] [--exclude-drifted] [--max-foreign-cores X]
                [--model models/contention-lstm.onnx]
                [--json OUT.json] [--markdown OUT.md]

DIR is a dataset of the recorder (scripts/dataset/record.py, docs/dataset.md). Every
run is held out: nothing here is fitted. For each scorer (scripts/model/scorers.py)
and each group of runs (per schedule family and per victim class), it reports:

- per-run Spearman and MAE between the score and the signed pair label of every
  labelled second, averaged over runs, with a percentile bootstrap interval over whole
  runs (stats.py);
- events on the 1 s labels at each threshold θ (events.py): slowdown episodes (>= θ
  for >= 5 s, onset = first second), alarm lead time (median and p95, negative =
  late, missed episodes count as never), false alarms per hour and their share of all
  alarms;
- the issue's targets, pass or fail.

Cache and membw victims are unobservable on a host without a PMU: their groups are
reported apart and say so; they never enter the CPU figures. `present_1s` is a
reference (the victim's own measured slowdown), not a scorer the agent could run.

External scorers: `--external rust=FILE` reads JSONL lines {"timestamp_ms", "victim",
"aggressor", "score"} (optionally "experiment"), e.g. the concatenated output of
`interference score --replay` over the dataset's samples files, or of
`scripts/model/nowcast.py --replay-dataset DIR`. Prints the Markdown report; --json
and --markdown also write it to files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import events as ev  # noqa: E402
import runs as rn  # noqa: E402
import scorers as sc  # noqa: E402
import stats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.normpath(os.path.join(HERE, "..", "..", "models", "contention-lstm.onnx"))
THRESHOLDS = (15.0, 25.0, 40.0)
TARGET_SPEARMAN = 0.85
TARGET_MAE = 8.0
TARGET_LEAD_MEDIAN = -2.0
TARGET_LEAD_P95 = -5.0
TARGET_FALSE_SHARE = 0.10
UNOBSERVABLE_NOTE = ("unobservable on this host (no PMU): LLC and memory-bandwidth contention is not "
                     "measured, so no scorer here can score it; the figures below are the CPU-attributed "
                     "scorers' for reference only and are not part of the CPU results")


# --------------------------------------------------------------------------------------
# Metrics


def run_metrics(run: rn.Run, scores: dict, thresholds) -> dict:
    """One scorer on one run: Spearman and MAE over its labelled seconds with a score,
    and the raw event counts per threshold."""
    ys, ss, total = [], [], 0
    ev_by = {th: {"leads": [], "false": 0, "alarm_runs": 0, "seconds": 0} for th in thresholds}
    for p in run.pairs:
        s = scores.get((p.victim, p.aggressor))
        if s is None:
            s = np.full(len(p.t), np.nan)
        total += len(p.t)
        ok = ~np.isnan(s)
        ys.append(p.y[ok])
        ss.append(s[ok])
        t, y = p.t.tolist(), p.y.tolist()
        sl = s.tolist()
        for th in thresholds:
            e = ev_by[th]
            e["leads"] += [x.lead for x in ev.lead_times(t, y, sl, th)]
            f, r = ev.false_alarms(t, y, sl, th)
            e["false"] += f
            e["alarm_runs"] += r
            e["seconds"] += len(t)
    y = np.concatenate(ys) if ys else np.zeros(0)
    s = np.concatenate(ss) if ss else np.zeros(0)
    return {"points": int(len(y)), "labelled": int(total),
            "spearman": stats.spearman(s, y), "mae": stats.mae(s, y) if len(y) else math.nan,
            "events": ev_by}


def group_metrics(per_run: list[dict], thresholds, b: int, seed: int) -> dict:
    sp = stats.bootstrap_mean_ci([m["spearman"] for m in per_run], b, seed)
    ma = stats.bootstrap_mean_ci([m["mae"] for m in per_run], b, seed)
    points = sum(m["points"] for m in per_run)
    labelled = sum(m["labelled"] for m in per_run)
    out = {"runs": len(per_run), "points": points, "coverage": points / labelled if labelled else None,
           "spearman": {"mean": sp[0], "ci95": [sp[1], sp[2]],
                        "runs": sum(1 for m in per_run if not math.isnan(m["spearman"]))},
           "mae": {"mean": ma[0], "ci95": [ma[1], ma[2]]},
           "events": {}}
    for th in thresholds:
        leads = [x for m in per_run for x in m["events"][th]["leads"]]
        false = sum(m["events"][th]["false"] for m in per_run)
        runs_ = sum(m["events"][th]["alarm_runs"] for m in per_run)
        secs = sum(m["events"][th]["seconds"] for m in per_run)
        out["events"][f"{th:g}"] = ev.summarise(leads, false, runs_, secs)
    return out


def groups(runs: list[rn.Run]) -> list[dict]:
    """The groups the report shows: cpu victims (all, per family, per thread count),
    then each other victim class; cache and membw apart as unobservable without a PMU."""
    out = []

    def add(name, members, observable=True, note=None):
        if members:
            out.append({"name": name, "runs": members, "observable": observable, "note": note})

    cpu = [r for r in runs if r.victim_kind == "cpu"]
    add("cpu victims, all families", cpu)
    for fam in ("steps", "ramps", "recurring", "trace"):
        add(f"cpu victims, {fam}", [r for r in cpu if r.family == fam])
    for n in sorted({r.threads for r in cpu}):
        add(f"cpu victims, {n} thread{'s' if n > 1 else ''}", [r for r in cpu if r.threads == n])
    add("lab VM victims", [r for r in runs if r.victim_kind == "vm"])
    add("ctxsw victims", [r for r in runs if r.victim_kind == "ctxsw"])
    add("fsync victims", [r for r in runs if r.victim_kind == "fsync"],
        note="I/O latency: the scorers see only its CPU part")
    for k in rn.PMU_CLASSES:
        members = [r for r in runs if r.victim_kind == k]
        obs = all(r.observable for r in members)
        add(f"{k} victims", members, obs, None if obs else UNOBSERVABLE_NOTE)
    return out


def targets(result: dict, thresholds) -> list[dict]:
    """The issue's targets for every non-reference scorer."""
    out = []
    g = {x["name"]: x for x in result["groups"]}
    cpu, steps = g.get("cpu victims, all families"), g.get("cpu victims, steps")
    for name in result["scorers"]:
        if name in sc.REFERENCES:
            continue
        if cpu and name in cpu["scorers"]:
            m = cpu["scorers"][name]
            out.append({"target": f"Spearman >= {TARGET_SPEARMAN}", "scorer": name,
                        "value": m["spearman"]["mean"], "pass": _ge(m["spearman"]["mean"], TARGET_SPEARMAN)})
            out.append({"target": f"MAE <= {TARGET_MAE:g}", "scorer": name,
                        "value": m["mae"]["mean"], "pass": _le(m["mae"]["mean"], TARGET_MAE)})
        if steps and name in steps["scorers"]:
            for th in thresholds:
                e = steps["scorers"][name]["events"][f"{th:g}"]
                out.append({"target": f"steps @{th:g} detection median <= 2 s", "scorer": name,
                            "value": e["lead_median_s"], "pass": _ge(e["lead_median_s"], TARGET_LEAD_MEDIAN)})
                out.append({"target": f"steps @{th:g} detection p95 <= 5 s", "scorer": name,
                            "value": e["lead_p95_s"], "pass": _ge(e["lead_p95_s"], TARGET_LEAD_P95)})
                out.append({"target": f"steps @{th:g} false alarms <= 10%", "scorer": name,
                            "value": e["false_alarm_share"],
                            "pass": _le(e["false_alarm_share"], TARGET_FALSE_SHARE) if e["alarm_runs"] else None})
    return out


def _ge(x, bound):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else bool(x >= bound)


def _le(x, bound):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else bool(x <= bound)


def evaluate(runs: list[rn.Run], scorer_fns: dict, thresholds=THRESHOLDS, b: int = 2000, seed: int = 1) -> dict:
    per_run: dict[str, dict[str, dict]] = {name: {} for name in scorer_fns}
    for r in runs:
        for name, fn in scorer_fns.items():
            s = sc.scores_for(r, name, fn)
            if s is not None:
                per_run[name][r.id] = run_metrics(r, s, thresholds)
    result = {"scorers": list(scorer_fns), "thresholds": list(thresholds), "groups": [], "runs": []}
    for r in runs:
        result["runs"].append({
            "id": r.id, "family": r.family, "victim": r.victim_kind, "threads": r.threads,
            "layout": r.meta.get("layout"),
            "neighbours": [f"{w['kind']}x{w['threads']}" for w in r.meta["workloads"] if w.get("role") == "neighbour"],
            "labelled_seconds": r.labelled_seconds, "drift_max": r.meta.get("drift_max"),
            "drift_flagged": r.drift_flagged, "pmu": r.pmu,
            "foreign_cores_mean": (r.meta.get("host") or {}).get("load", {}).get("foreign_cores_mean"),
            "steal_cores_mean": (r.meta.get("host") or {}).get("load", {}).get("steal_cores_mean"),
            "host_share_pct": sc.host_share(r),
            "alignment_lag_s": sc.alignment_lag(r),
            "per_scorer": {n: {"spearman": per_run[n][r.id]["spearman"], "mae": per_run[n][r.id]["mae"]}
                           for n in scorer_fns if r.id in per_run[n]}})
    for g in groups(runs):
        entry = {"name": g["name"], "runs": [r.id for r in g["runs"]], "observable": g["observable"],
                 "note": g["note"], "scorers": {}}
        for name in scorer_fns:
            members = [per_run[name][r.id] for r in g["runs"] if r.id in per_run[name]]
            if members:
                entry["scorers"][name] = group_metrics(members, thresholds, b, seed)
        result["groups"].append(entry)
    result["targets"] = targets(result, thresholds)
    return result


# --------------------------------------------------------------------------------------
# Report


def _f(x, digits=2, pct=False):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "missed" if x < 0 else "inf"
    return f"{100 * x:.0f}%" if pct else f"{x:.{digits}f}"


def _ci(m, digits=2):
    lo, hi = m["ci95"]
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return _f(m["mean"], digits)
    return f"{_f(m['mean'], digits)} [{_f(lo, digits)}, {_f(hi, digits)}]"


def markdown(result: dict, main_th: float) -> str:
    th_key = f"{main_th:g}"
    L = [f"Dataset `{result.get('data', '?')}` ({len(result['runs'])} runs); thresholds "
         f"{', '.join(f'{t:g}' for t in result['thresholds'])}; bootstrap {result.get('bootstrap')} "
         f"resamples of whole runs.", ""]
    for n in result.get("notes", []):
        L.append(f"- {n}")
    if result.get("notes"):
        L.append("")
    L += ["### Runs", "",
          "| run | family | victim | layout | neighbours | labelled s | drift max | flagged | "
          "foreign load (cores) | hypervisor steal (cores) | host took (% of victim's runnable time) | "
          "label lag (s) |",
          "|---|---|---|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in result["runs"]:
        L.append(f"| {r['id']} | {r['family']} | {r['victim']}x{r['threads']} | {r['layout']} | "
                 f"{'+'.join(r['neighbours'])} | {r['labelled_seconds']} | {_f(r['drift_max'], 3)} | "
                 f"{'yes' if r['drift_flagged'] else ''} | {_f(r['foreign_cores_mean'])} | "
                 f"{_f(r.get('steal_cores_mean'))} | {_f(r.get('host_share_pct'), 1)} | "
                 f"{'n/a' if r.get('alignment_lag_s') is None else r['alignment_lag_s']} |")
    L += ["", "### Targets (cpu victims: accuracy over all families, detection on random steps)", ""]
    L += targets_table(result)
    for g in result["groups"]:
        L += ["", f"### {g['name']} ({len(g['runs'])} run{'s' if len(g['runs']) != 1 else ''}: "
                  f"{', '.join(g['runs'])})", ""]
        if g["note"]:
            L += [f"**{g['note']}.**" if not g["observable"] else f"_{g['note']}._", ""]
        L += [f"| scorer | runs | coverage | Spearman [95% CI] | MAE [95% CI] | episodes @{th_key} (missed) | "
              f"lead median / p95 (s) | false alarms /h | false share |",
              "|---|---:|---:|---|---|---:|---|---:|---:|"]
        for name, m in g["scorers"].items():
            e = m["events"][th_key]
            L.append(f"| {name} | {m['runs']} | {_f(m['coverage'], pct=True)} | {_ci(m['spearman'])} | "
                     f"{_ci(m['mae'], 1)} | {e['episodes']} ({e['missed']}) | "
                     f"{_f(e['lead_median_s'], 1)} / {_f(e['lead_p95_s'], 1)} | "
                     f"{_f(e['false_alarms_per_hour'], 1)} | {_f(e['false_alarm_share'], pct=True)} |")
        others = [t for t in result["thresholds"] if f"{t:g}" != th_key]
        if others:
            L += ["", "| θ | scorer | episodes (missed) | lead median / p95 (s) | false alarms /h | false share |",
                  "|---:|---|---:|---|---:|---:|"]
            for t in others:
                for name, m in g["scorers"].items():
                    e = m["events"][f"{t:g}"]
                    L.append(f"| {t:g} | {name} | {e['episodes']} ({e['missed']}) | "
                             f"{_f(e['lead_median_s'], 1)} / {_f(e['lead_p95_s'], 1)} | "
                             f"{_f(e['false_alarms_per_hour'], 1)} | {_f(e['false_alarm_share'], pct=True)} |")
    return "\n".join(L) + "\n"


def targets_table(result: dict) -> list[str]:
    """One row per scorer, one column per target: the value and whether it is met."""
    cols: list[str] = []
    rows: dict[str, dict] = {}
    for t in result["targets"]:
        if t["target"] not in cols:
            cols.append(t["target"])
        mark = "" if t["pass"] is None else (" ✓" if t["pass"] else " ✗")
        rows.setdefault(t["scorer"], {})[t["target"]] = _f(t["value"]) + mark
    if not cols:
        return ["No target applies (no cpu victim in the dataset)."]
    out = ["| scorer | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, vals in rows.items():
        out.append(f"| {name} | " + " | ".join(vals.get(c, "") for c in cols) + " |")
    return out + ["", "Detection targets are on lead time (negative = late): median >= -2 s, p95 >= -5 s; "
                      "`missed` means more than half (median) or 5% (p95) of episodes got no alarm."]


def finite(x):
    """JSON-safe: NaN becomes null, -inf (a missed episode) the string "missed"."""
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "missed" if x < 0 else "inf"
        return x
    if isinstance(x, dict):
        return {str(k): finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


# --------------------------------------------------------------------------------------
# CLI


def parse_thresholds(spec: str) -> tuple:
    try:
        out = tuple(sorted({float(x) for x in spec.split(",") if x.strip()}))
    except ValueError:
        raise SystemExit(f"evaluate: --thresholds {spec!r}: want numbers separated by commas")
    if not out:
        raise SystemExit("evaluate: --thresholds is empty")
    return out


def build_scorers(names: list[str], externals: list[str], model: str, notes: list) -> dict:
    fns: dict = {}
    for n in names:
        if n in sc.BUILTIN:
            fns[n] = sc.BUILTIN[n]
        elif n == "present_1s":
            fns[n] = None
        elif n == "lstm":
            try:
                import onnxruntime  # noqa: F401

                if not os.path.isfile(model):
                    raise FileNotFoundError(model)
                fns[n] = sc.lstm_scorer(model)
            except (ImportError, OSError) as e:
                notes.append(f"lstm: not run ({e.__class__.__name__}: {e})")
        else:
            raise SystemExit(f"evaluate: unknown scorer {n!r} (known: {', '.join(sc.DEFAULT)})")
    for spec in externals:
        name, eq, path = spec.partition("=")
        if not eq or not name or not path:
            raise SystemExit(f"evaluate: --external {spec!r}: want NAME=FILE")
        if name in fns:
            raise SystemExit(f"evaluate: --external {name}: the name is taken")
        try:
            fns[name] = sc.External(path)
        except ValueError as e:
            raise SystemExit(f"evaluate: {e}")
    return fns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset directory (scripts/dataset/record.py)")
    ap.add_argument("--scorers", default=",".join(sc.DEFAULT), help="comma-separated built-in scorers")
    ap.add_argument("--external", action="append", default=[], metavar="NAME=FILE",
                    help="a scorer's JSONL output (repeatable)")
    ap.add_argument("--thresholds", default="15,25,40", help="event thresholds θ, slowdown points")
    ap.add_argument("--main-threshold", type=float, default=25.0, help="θ of the main tables")
    ap.add_argument("--bootstrap", type=int, default=2000, help="resamples of whole runs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exclude-drifted", action="store_true",
                    help="leave out runs whose solo speed drifted by more than 5%%")
    ap.add_argument("--max-foreign-cores", type=float, default=None,
                    help="leave out labelled seconds in which the host was busier than this outside the "
                         "experiment (host.jsonl)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="the lstm scorer's ONNX model")
    ap.add_argument("--json", default=None, help="write the full result here")
    ap.add_argument("--markdown", default=None, help="write the Markdown report here")
    a = ap.parse_args()
    thresholds = parse_thresholds(a.thresholds)
    if a.main_threshold not in thresholds:
        thresholds = tuple(sorted(set(thresholds) | {a.main_threshold}))
    notes: list[str] = []
    fns = build_scorers([n.strip() for n in a.scorers.split(",") if n.strip()], a.external, a.model, notes)
    try:
        runs, load_notes = rn.load_dataset(a.data, a.exclude_drifted, a.max_foreign_cores)
    except (ValueError, OSError) as e:
        raise SystemExit(f"evaluate: {e}")
    t0 = time.monotonic()
    result = evaluate(runs, fns, thresholds, a.bootstrap, a.seed)
    for name, fn in fns.items():
        if isinstance(fn, sc.External):
            notes.append(f"{name}: {fn.matched} of {len(fn.lines)} lines of {fn.path} matched a labelled pair")
    flagged = [r.id for r in runs if r.drift_flagged]
    if flagged:
        notes.append(f"solo speed drifted by more than 5% (kept, flagged): {', '.join(flagged)}")
    notes += load_notes
    result.update({"data": os.path.abspath(a.data), "bootstrap": a.bootstrap, "seed": a.seed, "notes": notes,
                   "protocol": {"min_episode_s": ev.MIN_EPISODE, "lead_cap_s": ev.LEAD_CAP,
                                "align_tolerance_ms": sc.ALIGN_TOLERANCE_MS, "max_stale_ms": sc.MAX_STALE_MS,
                                "definitions": "scripts/model/evaluate.py, models/README.md"}})
    md = markdown(result, a.main_threshold)
    print(md, end="")
    print(f"(evaluated in {time.monotonic() - t0:.1f} s)", file=sys.stderr)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(finite(result), f, indent=1, allow_nan=False)
            f.write("\n")
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write(md)


if __name__ == "__main__":
    main()
