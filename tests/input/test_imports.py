import subprocess
import sys


def _imported(modules: list[str]) -> set[str]:
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_client_never_imports_torch():
    mods = _imported(["input", "input.keymap", "input.net", "input.bot", "input.hud", "input.window", "input.app",
                      "input.replay"])
    assert "pygame" in mods and "torch" not in mods


def test_the_engine_never_imports_pygame():
    mods = _imported(["engine.session", "engine.server", "engine.protocol", "engine.scheduler", "engine.recorder",
                      "engine.commands.serve", "engine.bench.play"])
    assert "torch" in mods and "pygame" not in mods
