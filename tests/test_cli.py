import subprocess
import sys

from reverie.engine.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_a_clear_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_cli_import_pulls_in_no_heavy_packages():
    code = (
        "import sys, engine.cli, world.actions, world.registry;"
        "heavy = {'pygame', 'vizdoom', 'triton', 'flash_attn'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_bad_client_rate_is_refused_before_anything_starts(capsys):
    for command in ("client", "play"):
        try:
            code = main([command, "--rate", "fast"])
        except SystemExit as exc:  # argparse exits with 2 on a bad value
            code = exc.code
        assert code == 2
        assert "rate must be 'game', 'max' or frames per second" in capsys.readouterr().err
