"""A non-editable install into a clean virtual environment imports and runs ``hashkit --help``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
    located = subprocess.run([python, "-c", "import hashkit.cli.main as m, hashkit.hashing, hashkit.sfm_pairs; "
                              "print(m.__file__)"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert located.stdout.strip().startswith(purelib), "imported from the installed wheel, not the tree"
    help_text = subprocess.run([target / "bin" / "hashkit", "--help"], capture_output=True, text=True,
                               check=True, cwd=tmp_path).stdout
    for command in ("reconstruct", "train", "encode", "query"):
        assert command in help_text
    assert not Path(purelib, "cli").exists() and not Path(purelib, "hashing").exists(), \
        "no generic top-level packages in site-packages"
