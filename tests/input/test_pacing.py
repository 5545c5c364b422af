"""Client pacing: the rate parser and the fixed-schedule pacer (pure, no sockets)."""

import pytest

from reverie.input.pacing import StepPacer, parse_rate, resolve_rate


def test_rates_parse_and_bad_ones_say_what_is_allowed():
    assert parse_rate("game") == "game" and parse_rate(" MAX ") == "max"
    assert parse_rate("12.5") == 12.5 and parse_rate(20) == 20.0
    for bad in ("fast", "0", "-3", "inf", "nan", None):
        with pytest.raises(ValueError, match="rate must be"):
            parse_rate(bad)


def test_game_rate_is_the_servers_real_time_rate_and_max_is_unlimited():
    assert resolve_rate("game", 8.75) == 8.75
    assert resolve_rate("game", 0.0) is None      # an older server that does not say: as before, no limit
    assert resolve_rate("max", 8.75) is None
    assert resolve_rate("20", 8.75) == 20.0


def test_the_schedule_holds_the_average_rate_without_drifting_to_the_loop_tick():
    p = StepPacer(10.0)                            # one send per 0.1 s
    assert p.due(0.0)
    p.sent(0.0)
    assert not p.due(0.05) and p.due(0.1) and p.seconds_until_due(0.04) == pytest.approx(0.06)
    t, sends = 0.0, [0.0]
    while t < 1.0:                                # a loop that wakes every 8 ms, late by up to a tick
        t = round(t + 0.008, 3)
        if p.due(t):
            p.sent(t)
            sends.append(t)
    assert len(sends) == 11                       # 0.0, 0.1, ..., 1.0: the lateness does not accumulate
    assert all(b - a < 0.1 + 0.008 + 1e-9 for a, b in zip(sends, sends[1:]))  # never later than a tick
    assert sends[-1] - sends[0] == pytest.approx(1.0, abs=0.008)


def test_after_a_stall_it_restarts_from_now_instead_of_bursting():
    p = StepPacer(10.0)
    p.sent(0.0)
    p.sent(0.55)                                   # five periods late (a slow frame, a pause)
    assert not p.due(0.6) and p.due(0.65)          # next one a full period later, no catch-up
    p.sent(0.68)                                   # late by less than a period: stays on the schedule
    assert p.due(0.75) and not p.due(0.74)


def test_no_limit_is_always_due():
    p = StepPacer(None)
    assert p.hz is None
    for t in (0.0, 0.0, 0.001):
        assert p.due(t)
        p.sent(t)
    assert StepPacer(4.0).hz == 4.0
    with pytest.raises(ValueError):
        StepPacer(0.0)
