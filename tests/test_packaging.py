"""The five top-level folders install under the one import name `reverie`, so other distributions'
top-level packages with the same names (Hugging Face's `kernels`, any `memory`, `world`, ...) do not
shadow them, and every package folder is listed in pyproject.toml."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("engine", "input", "kernels", "memory", "world")


def test_every_package_folder_is_installed_under_reverie():
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {"reverie." + ".".join(p.parent.relative_to(ROOT).parts)
               for top in FOLDERS for p in (ROOT / top).rglob("__init__.py")}
    assert set(cfg["packages"]) == on_disk
    assert cfg["package-dir"] == {f"reverie.{top}": top for top in FOLDERS}


def test_every_data_file_in_a_package_ships_in_the_wheel():
    """Weights and keymaps live in subfolders of the packages; package-data must name each of them, or a
    non-editable install (`pip install .`, a wheel) has no bundled model."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {pkg: ROOT / cfg["package-dir"].get(pkg, "/".join(pkg.split(".")[1:])) for pkg in cfg["packages"]}
    for pkg in cfg["packages"]:  # a sub-package's folder follows its parent's mapping
        top = "reverie." + pkg.split(".")[1]
        dirs[pkg] = ROOT / cfg["package-dir"][top] / Path(*pkg.split(".")[2:])
    tracked = subprocess.run(["git", "ls-files", *FOLDERS], cwd=ROOT, capture_output=True, text=True).stdout.split()
    data = [f for f in tracked if not f.endswith(".py")]
    assert data, "no data files found (weights, keymaps)"
    for f in data:
        owners = [pkg for pkg, d in dirs.items() if (ROOT / f).is_relative_to(d)]
        pkg = max(owners, key=lambda p: len(str(dirs[p])))
        rel = str((ROOT / f).relative_to(dirs[pkg]))
        assert any(fnmatch.fnmatch(rel, pat) for pat in cfg["package-data"].get(pkg, [])), f"{f} is not in package-data"


def test_reverie_works_beside_foreign_packages_of_the_same_names(tmp_path):
    """A user with Hugging Face's `kernels` (and packages called memory, world, engine, input) installed
    first on the path: reverie's own modules still load and attend, and theirs stay importable."""
    for name in FOLDERS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OWNER = 'someone else: {name}'\n")
    code = textwrap.dedent("""
        import torch
        import kernels, memory
        from reverie.kernels import attend
        from reverie.kernels.view import KVSegment, KVView, RopeSpec
        from reverie.engine.cli import main
        from reverie.memory import MemoryManager
        q = torch.randn(2, 3, 8)
        seg = KVSegment(k=torch.randn(2, 5, 8), v=torch.randn(2, 5, 8), pos=torch.arange(5))
        out = attend(q, KVView(segments=(seg,), q_pos=torch.arange(5, 8), rope=RopeSpec(4)))
        print(kernels.OWNER, "|", memory.OWNER, "|", tuple(out.shape))
    """)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["someone", "else:", "kernels", "|", "someone", "else:", "memory", "|", "(2,",
                                  "3,", "8)"]
