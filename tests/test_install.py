"""A non-editable install into a clean virtual environment holds every module of the source tree,
imports each of them from the wheel, and runs ``hashkit --help``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


FOLDERS = {"cli": "hashkit.cli", "hashing": "hashkit.hashing", "sfm_pairs": "hashkit.sfm_pairs"}
IMPORT_EACH = "import importlib, sys\nfor name in sys.argv[1:]:\n    print(importlib.import_module(name).__file__)"


def source_modules() -> list[str]:
    """The name every module of the three source folders has once installed (``hashkit.*``)."""
    return sorted(".".join([FOLDERS[path.relative_to(REPO).parts[0]], *path.relative_to(REPO).parts[1:-1],
                            path.stem]).removesuffix(".__init__")
                  for folder in FOLDERS for path in (REPO / folder).rglob("*.py") if "__pycache__" not in path.parts)


def test_wheel_install_in_clean_venv(tmp_path):
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    # Dependencies (torch alone is gigabytes) come from this environment through a .pth file;
    # hashkit itself is built from a copy of the source tree into a wheel and installed from it.
    purelib = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                      text=True).strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "deps.pth").write_text(ours + "\n")
    build = tmp_path / "src"  # the source tree without environments, outputs and data
    shutil.copytree(REPO, build, ignore=shutil.ignore_patterns(
        ".venv", ".git", "demo-output", "benchmarks", ".devcarry", "__pycache__", "*.egg-info", "build"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(wheels), str(build)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("hashkit-*.whl")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    str(wheel)], check=True, cwd=tmp_path)
    modules = source_modules()
    imported = subprocess.run([python, "-c", IMPORT_EACH, *modules], capture_output=True, text=True, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    files = imported.stdout.splitlines()
    assert len(files) == len(modules) and all(file.startswith(purelib) for file in files), \
        "every module imported from the installed wheel, not the tree"
    help_text = subprocess.run([target / "bin" / "hashkit", "--help"], capture_output=True, text=True,
                               check=True, cwd=tmp_path).stdout
    for command in ("reconstruct", "train", "encode", "query"):
        assert command in help_text
    assert not Path(purelib, "cli").exists() and not Path(purelib, "hashing").exists(), \
        "no generic top-level packages in site-packages"
