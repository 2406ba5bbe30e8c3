"""hashkit's packages: every package under the three folders that install as ``hashkit.*`` is found,
so a new subpackage is packaged without a list to keep by hand. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

FOLDERS = {"hashkit.cli": "cli", "hashkit.hashing": "hashing", "hashkit.sfm_pairs": "sfm_pairs"}

setup(
    package_dir=FOLDERS,
    packages=[name + suffix for name, folder in FOLDERS.items()
              for suffix in ["", *(f".{package}" for package in find_packages(folder))]],
)
