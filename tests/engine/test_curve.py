"""CURVE: beyond loopback the server needs keys; a client without the server's key is refused inside
ZeroMQ and the server keeps serving; a client with it plays (the server here binds loopback with keys,
which is allowed, so the test reaches no other machine)."""

import subprocess
import sys

import pytest

from reverie.engine.curve import CurveError, is_loopback, make_keys
from reverie.engine.server import ServerConfig
from reverie.input.net import Connection
from serving import ServerThread

pytestmark = pytest.mark.skipif(not __import__("zmq").has("curve"), reason="libzmq without CURVE")


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.4.5:0", True), ("tcp://localhost:1", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/x", True), ("inproc://x", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://192.168.1.4:5555", False),
    ("tcp://eth0:5555", False), ("udp://127.0.0.1:1", False),
])
def test_what_counts_as_loopback(endpoint, local):
    assert is_loopback(endpoint) is local


def test_binding_beyond_loopback_without_keys_is_refused_with_how_to_fix_it():
    with pytest.raises(CurveError, match="reverie keys"):
        ServerConfig(endpoint="tcp://0.0.0.0:5555")
    with pytest.raises(ValueError, match="curve_secret"):
        ServerConfig(allow_clients="somewhere")


def test_keys_are_made_once_with_a_private_secret(tmp_path):
    public, secret = make_keys(tmp_path, "server")
    assert public.read_text().count("public-key") == 1 and (secret.stat().st_mode & 0o077) == 0
    with pytest.raises(CurveError, match="exists"):
        make_keys(tmp_path, "server")


def _play_one_frame(conn):
    conn.send_action(1)
    frame = None
    while frame is None:
        frame = conn.poll(2000)
    return frame


def test_a_client_without_the_key_is_refused_and_one_with_it_plays(tmp_path):
    public, secret = make_keys(tmp_path / "keys")
    with ServerThread(curve_secret=str(secret)) as st:
        with pytest.raises(TimeoutError):
            Connection(st.endpoint, timeout_s=1.5)  # plain ZMTP against a CURVE server: no handshake
        _, wrong = make_keys(tmp_path / "other")
        with pytest.raises(TimeoutError):
            Connection(st.endpoint, timeout_s=1.5, server_key=str(wrong.with_suffix(".key")))
        assert st.server.clients == {}  # nothing reached the server's loop
        with Connection(st.endpoint, server_key=str(public)) as c:
            assert _play_one_frame(c).pixels.shape == (16, 16, 3)


def test_allow_clients_admits_only_listed_client_keys(tmp_path):
    public, secret = make_keys(tmp_path / "server")
    make_keys(tmp_path / "allowed", "alice")
    _, mallory = make_keys(tmp_path / "mallory", "mallory")
    with ServerThread(curve_secret=str(secret), allow_clients=str(tmp_path / "allowed")) as st:
        with pytest.raises(TimeoutError):
            Connection(st.endpoint, timeout_s=1.5, server_key=str(public), client_key=str(mallory))
        with Connection(st.endpoint, server_key=str(public),
                        client_key=str(tmp_path / "allowed" / "alice.key_secret")) as c:
            assert _play_one_frame(c).pixels.shape == (16, 16, 3)


def test_reverie_keys_and_a_bad_key_file_are_clear_errors(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "reverie.engine.cli", *a], capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    out = run("keys", "--out", str(tmp_path))
    assert out.returncode == 0 and (tmp_path / "server.key_secret").exists()
    again = run("keys", "--out", str(tmp_path))
    assert again.returncode == 1 and "exists" in again.stderr
    (tmp_path / "broken.key_secret").write_text("not a certificate")
    with pytest.raises(CurveError, match="cannot read|no secret"):
        ServerThread(curve_secret=str(tmp_path / "broken.key_secret"))
    with pytest.raises(CurveError, match="no secret"):
        ServerThread(curve_secret=str(tmp_path / "server.key"))
