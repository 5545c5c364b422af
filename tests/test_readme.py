import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_has_exactly_two_setup_commands_at_the_top():
    text = (ROOT / "README.md").read_text()
    head = text.split("\n## ", 1)[0]
    blocks = _bash_blocks(head)
    assert len(blocks) == 2
    assert blocks[0].endswith("reverie play")
    assert "pytest" in blocks[1]


def test_ci_runs_the_readme_test_command_verbatim():
    text = (ROOT / "README.md").read_text()
    test_command = _bash_blocks(text.split("\n## ", 1)[0])[1]
    assert test_command in (ROOT / ".ci" / "run").read_text()
