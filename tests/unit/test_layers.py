"""Imports point inward (STYLE.md): rwa → serve/actors → ingestion/pipeline/training → core."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = {"core": 0, "ingestion": 1, "pipeline": 1, "training": 1, "actors": 2, "serve": 2, "rwa": 3}
CAPABILITIES = {"ingestion", "pipeline", "training"}


def _imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _imports(path: Path) -> set[str]:
    return _imported_packages(path) & LAYER.keys()


def test_imports_point_inward_and_capabilities_stay_apart() -> None:
    wrong = []
    for package, level in LAYER.items():
        for path in (ROOT / package).rglob("*.py"):
            for imported in _imports(path) - {package}:
                sideways = package in CAPABILITIES and imported in CAPABILITIES
                if LAYER[imported] > level or sideways or (level == 2 and LAYER[imported] == 2):
                    wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not wrong, wrong


def test_only_one_module_imports_raydp() -> None:
    importers = [p.relative_to(ROOT).as_posix() for pkg in LAYER for p in (ROOT / pkg).rglob("*.py")
                 if "raydp" in _imported_packages(p)]
    assert importers == ["pipeline/spark.py"]

