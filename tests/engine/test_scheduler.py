import pytest

from reverie.engine.scheduler import Admission, AdmissionError, RoundRobin


def test_two_phase_admission_refuses_without_disturbing_others():
    a = Admission(total_bytes=100, max_sessions=3)
    assert a.can_admit(60) == (True, "")
    a.admit("s1", 60)
    ok, why = a.can_admit(50)
    assert not ok and "only 40" in why
    with pytest.raises(AdmissionError):
        a.admit("s2", 50)
    assert a.reserved_bytes == 60 and a.free_bytes == 40
    a.admit("s2", 40)
    assert not a.can_admit(1)[0]
    a.resize("s1", 50)               # shrinking a held session always fits
    assert a.can_admit(10)[0]
    assert not a.can_admit(70, "s1")[0] and a.can_admit(60, "s1")[0]
    a.release("s1")
    assert a.reserved_bytes == 40


def test_session_count_limit_and_validation():
    a = Admission(total_bytes=None, max_sessions=1)
    a.admit("s1", 10**12)
    ok, why = a.can_admit(0)
    assert not ok and "maximum of 1" in why
    assert a.can_admit(5, "s1")[0]
    with pytest.raises(ValueError):
        Admission(total_bytes=0)
    assert not Admission(None).can_admit(-1)[0]


def test_round_robin_serves_ready_keys_fairly():
    rr = RoundRobin()
    for k in "abc":
        rr.add(k)
    ready = {"a", "b", "c"}
    order = [rr.next(ready.__contains__) for _ in range(6)]
    assert order == list("abcabc")
    ready = {"c"}
    assert rr.next(ready.__contains__) == "c"
    rr.remove("c")
    assert rr.next(ready.__contains__) is None
    assert len(rr) == 2
