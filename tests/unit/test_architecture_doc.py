"""docs/ARCHITECTURE.md and the README name every package and module the tree has."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "distillab"


def tree_block(text: str) -> str:
    return text.split("## The tree", 1)[1].split("```")[1] if "## The tree" in text else text


def test_every_module_is_in_the_architecture_page_and_the_readme():
    for doc in (ROOT / "docs" / "ARCHITECTURE.md", ROOT / "README.md"):
        tree = tree_block(doc.read_text())
        named = set(re.findall(r"[\w.]+\.py", tree)) | set(re.findall(r"(\w+)/", tree))
        for path in PACKAGE.rglob("*.py"):
            if path.name == "__init__.py" or "conf" in path.relative_to(PACKAGE).parts:
                continue
            assert path.name in named, f"{doc.name} does not name {path.relative_to(PACKAGE)}"
        for folder in (p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"):
            if "conf" not in folder.relative_to(PACKAGE).parts[:1]:
                assert folder.name in named, f"{doc.name} does not name {folder.relative_to(PACKAGE)}/"


def test_the_layers_on_the_page_are_the_contract():
    pyproject = (ROOT / "pyproject.toml").read_text()
    layers = re.findall(r'^    "([\w |]+)",$', pyproject.split("[[tool.importlinter.contracts]]", 1)[1], re.M)
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text().split("## Layers", 1)[1].split("```")[1]
    on_page = [line.split("  ")[0].strip() for line in page.splitlines() if line and not line.startswith(" ")]
    assert on_page == layers
