"""The demo's inline Python (scripts/demo.sh) compiles, and what it imports exists: nothing else
runs it before a user does."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.sh"


def python_blocks() -> list[str]:
    return re.findall(r"<<'PY'\n(.*?)\nPY\n", DEMO.read_text(), re.S)


def test_every_python_block_of_the_demo_compiles_and_imports_what_exists() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        tree = ast.parse(block)  # a syntax error fails here
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)


def test_the_scripts_import() -> None:
    for script in sorted(DEMO.parent.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"script_{script.stem}", script)
        assert spec is not None
        assert spec.loader is not None
        spec.loader.exec_module(importlib.util.module_from_spec(spec))  # defines, runs no main
