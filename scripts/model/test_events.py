"""Episodes, lead times and false alarms against hand-worked series (events.py)."""

import math

import pytest

import events as ev

NAN = math.nan


def test_stretches_split_on_missing_seconds():
    assert ev.stretches([1, 2, 3, 5, 6, 9]) == [(0, 3), (3, 5), (5, 6)]
    assert ev.stretches([]) == []


def test_onset_is_first_second_of_5_s_above_threshold():
    t = list(range(20))
    y = [0] * 3 + [30] * 4 + [0] * 3 + [30] * 6 + [0] * 4  # 4 s run: no episode; 6 s run: one
    assert ev.episodes(t, y, 25) == [(10, 15)]
    assert ev.episodes(t, y, 35) == []


def test_run_at_the_start_of_a_stretch_is_no_onset():
    t = [0, 1, 2, 3, 4, 5, 6, 20, 21, 22, 23, 24, 25, 26]
    y = [30] * 7 + [30] * 7  # both runs open a stretch
    assert ev.episodes(t, y, 25) == []


def test_lead_times_on_time_early_late_missed():
    t = list(range(40))
    y = [0] * 10 + [50] * 10 + [0] * 20
    onset = 10
    s_on_time = [0] * 10 + [50] * 10 + [0] * 20
    assert ev.lead_times(t, y, s_on_time, 25)[0].lead == 0
    s_early = [0] * 7 + [50] * 13 + [0] * 20  # raised at 7: 3 s early
    assert ev.lead_times(t, y, s_early, 25)[0].lead == 3
    s_late = [0] * 12 + [50] * 8 + [0] * 20  # raised at 12: 2 s late
    (e,) = ev.lead_times(t, y, s_late, 25)
    assert (e.onset, e.end, e.lead) == (onset, 19, -2)
    s_never = [0] * 40
    assert ev.lead_times(t, y, s_never, 25)[0].lead == -math.inf
    s_after = [0] * 20 + [50] * 5 + [0] * 15  # only after the episode ended: missed
    assert ev.lead_times(t, y, s_after, 25)[0].lead == -math.inf


def test_lead_is_capped():
    t = list(range(60))
    y = [0] * 30 + [50] * 10 + [0] * 20
    s = [50] * 40 + [0] * 20  # on for 30 s before the onset
    assert ev.lead_times(t, y, s, 25)[0].lead == ev.LEAD_CAP


def test_nan_score_is_no_alarm():
    t = list(range(20))
    y = [0] * 5 + [50] * 10 + [0] * 5
    s = [NAN] * 6 + [50] * 14
    assert ev.lead_times(t, y, s, 25)[0].lead == -1


def test_false_alarms():
    t = list(range(60))
    y = [0] * 20 + [50] * 10 + [0] * 30
    s = [0] * 60
    s[2] = s[3] = 40  # 17 s before the onset: nothing within 10 s -> false
    s[12] = 40  # 8 s before the onset: announces it -> not false
    s[22] = 40  # during the episode -> not false
    s[50] = 40  # after -> false
    assert ev.false_alarms(t, y, s, 25) == (2, 4)


def test_false_alarm_window_stops_at_a_gap():
    t = list(range(10)) + list(range(20, 30))
    y = [0] * 10 + [50] * 10
    s = [0] * 9 + [40] + [0] * 10  # the label rises in the next stretch: not seen
    assert ev.false_alarms(t, y, s, 25) == (1, 1)


def test_percentile_and_summary():
    assert ev.percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert ev.percentile([-math.inf, 0, 1], 5) == -math.inf
    assert math.isnan(ev.percentile([], 50))
    m = ev.summarise([0, -1, -2, -math.inf], false=3, runs=10, seconds=1800)
    assert m["episodes"] == 4 and m["missed"] == 1
    assert m["lead_median_s"] == pytest.approx(-1.5)
    assert m["lead_p95_s"] == -math.inf
    assert m["false_alarms_per_hour"] == pytest.approx(6.0)
    assert m["false_alarm_share"] == pytest.approx(0.3)
