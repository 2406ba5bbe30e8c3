"""The packages stand in layers (README's Layout): a module imports only from its own package or from
packages below it, so no import runs back up and no two packages import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("cli", "hashing", "sfm_pairs")  # installed as hashkit.<folder>
LAYERS = [  # bottom to top
    "hashing",  # process-wide helpers: errors, progress, runtime, memory, the user cache, the version
    "hashing.files",  # file safety and the formats every step shares: locks, outputs, images, labels, pairs
    "hashing.methods",  # the hashing methods, their heads and registry
    "hashing.training",  # backbones, the network, the model file, the training loop
    "hashing.storage",  # code stores, encoding, shards, merging
    "hashing.search",  # search indexes and saved indexes
    "hashing.evaluation",  # metrics, query, reports, comparisons
    "sfm_pairs",  # reconstruction and pair mining
    "cli",  # the commands and inspect
]


def modules() -> dict[str, Path]:
    """Dotted module name (without ``hashkit.``) -> source file, for every module of the tree."""
    found = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The tree's modules that ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")
                base = ".".join(parents[:len(parents) - node.level + 1] + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        target = target.removeprefix("hashkit.")
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def package_of(name: str, known: dict[str, Path]) -> str:
    return ".".join(known[name].relative_to(ROOT).parent.parts)


def test_every_package_has_a_layer():
    known = modules()
    assert {package_of(name, known) for name in known} == set(LAYERS)


def test_no_import_runs_up_a_layer():
    known = modules()
    upward = [f"{name} -> {target}" for name in sorted(known) for target in sorted(imports(name, known[name], known))
              if LAYERS.index(package_of(target, known)) > LAYERS.index(package_of(name, known))]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_checker_sees_relative_and_lazy_imports():
    known = modules()
    assert "hashing.errors" in imports("hashing.files.locking", known["hashing.files.locking"], known)
    assert "hashing.methods.base" in imports("hashing.methods.lsh", known["hashing.methods.lsh"], known)
    lazy = imports("hashing.training.model_file", known["hashing.training.model_file"], known)
    assert "hashing.training.backbones" in lazy  # imported inside a function
