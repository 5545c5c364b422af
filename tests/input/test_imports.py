import subprocess
import sys


def _imported(modules: list[str]) -> set[str]:
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_client_never_imports_torch():
    mods = _imported([f"reverie.input{m}" for m in ("", ".keymap", ".net", ".bot", ".hud", ".window", ".app",
                                                    ".replay")])
    assert "pygame" in mods and "torch" not in mods


def test_the_engine_never_imports_pygame():
    mods = _imported([f"reverie.engine.{m}" for m in ("session", "server", "protocol", "scheduler", "recorder",
                                                      "commands.serve", "bench.play")])
    assert "torch" in mods and "pygame" not in mods
