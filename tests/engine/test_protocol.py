import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reverie.engine import protocol as P


def test_every_kind_round_trips():
    msgs = [P.Hello(client="x", credits=2, policy="window", budget_bytes=10, seed=3, record=True, seed_frame=[4, 4, 3]),
            P.Welcome(session="ab", model="m", frame_shape=[4, 4, 3], actions=["noop"], policies=["full"]),
            P.Action(seq=5, action=3, t_client_ns=7, shown_seq=4, t_shown_ns=6),
            P.Frame(seq=1, index=2, action=3, shape=[4, 4, 3], pose=[1.0, 2.0, 3.0], recording=True),
            P.Control(op="policy", value="window"), P.Stats(data={"a": {"b": 1}}), P.Error(code="x", message="y"),
            P.Bye(reason="ttl")]
    for msg in msgs:
        assert P.decode(P.encode(msg)) == msg


def test_unknown_fields_are_ignored_and_missing_fields_defaulted():
    raw = msgpack.packb({"k": "action", "v": P.PROTO_VERSION, "seq": 9, "from_the_future": [1, 2]})
    msg = P.decode(raw)
    assert msg == P.Action(seq=9)
    assert P.decode(msgpack.packb({"k": "hello"})) == P.Hello()  # no version field: the current one


@pytest.mark.parametrize("raw, code", [
    (b"\xc1", "malformed"),                                                    # never-used msgpack byte
    (b"", "malformed"),
    (msgpack.packb([1, 2, 3]), "malformed"),                                   # not a map
    (msgpack.packb({"k": "action", "v": 2, "shown_seq": True}), "bad_field"),  # bool is not an int here
    (msgpack.packb({"k": "action", "v": 1}), "version"),                      # a version-1 client
    (msgpack.packb({"k": "action", "v": 3}), "version"),
    (msgpack.packb({"k": "action", "v": "1"}), "version"),
    (msgpack.packb({"k": "teleport", "v": 2}), "unknown_kind"),
    (msgpack.packb({"v": 2}), "unknown_kind"),
    (msgpack.packb({"k": "action", "v": 2, "seq": "nine"}), "bad_field"),
    (msgpack.packb({"k": "hello", "v": 2, "client": "x" * 1000}), "bad_field"),
    (msgpack.packb({"k": "action", "v": 2, "seq": 2**64 - 1}), "bad_field"),
    (msgpack.packb({1: 2}), "malformed"),                                      # non-string keys
    (b"\x91" * 5000, "malformed"),                                             # deep nesting
    (b"\x80" * (P.MAX_HEADER_BYTES + 1), "oversize"),
])
def test_bad_headers_raise_protocol_errors_with_a_code(raw, code):
    with pytest.raises(P.ProtocolError) as info:
        P.decode(raw)
    assert info.value.code == code


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.dictionaries(st.sampled_from(["k", "v", "seq", "action", "op", "value", "shape", "data"]),
                                 st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=8)
                                              | st.sampled_from(list(P.KINDS)),
                                              lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                                              max_leaves=8)).map(msgpack.packb)))
def test_decode_only_ever_raises_protocol_error(raw):
    try:
        msg = P.decode(raw)
    except P.ProtocolError:
        return
    assert type(msg) in P.KINDS.values()


def test_frame_shape_validation():
    assert P.frame_shape([48, 64, 3]) == (48, 64, 3)
    for bad in ([48, 64], [48, 64, 4], [0, 64, 3], [48, -1, 3], ["48", 64, 3], [True, 64, 3], [10**6, 64, 3]):
        with pytest.raises(P.ProtocolError):
            P.frame_shape(bad)


def test_free_text_of_errors_and_byes_is_cut_to_fit_and_still_decodes():
    long = "x" * (P.MAX_STR + 100)
    for msg, text in ((P.Error(code="refused", message=long), lambda m: m.message), (P.Bye(reason=long), lambda m: m.reason)):
        assert len(text(msg)) == P.MAX_STR and text(msg).endswith("...")
        assert text(P.decode(P.encode(msg))) == text(msg)
    assert P.Error(message="short").message == "short"
