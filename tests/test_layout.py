"""The package's shape, measured: no import circle, few loose private modules, no private
names imported across files, a README for users, lint clean.

These are the measures the layout was redesigned to (see CHANGELOG.md, 0.2.0); a change that
breaks one says so here instead of drifting back.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxmsk"
SOURCES = ("jaxmsk", "tests", "benchmarks", "experiments")


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _modules() -> dict[str, Path]:
    return {_module_name(p)[0]: p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path):
    """(imported module, [names]) for every import statement in `path`, wherever it stands
    (imports inside functions close circles too), relative imports resolved."""
    name, is_package = _module_name(path)
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [alias.name for alias in node.names]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, path in modules.items():
        for target, names in _imports(path):
            if not target.startswith("jaxmsk"):
                continue
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            graph[m].update(subs)
            if len(subs) < len(names) or not names:
                if target in modules:
                    graph[m].add(target)
        graph[m].discard(m)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _private_imports() -> list[str]:
    """`file: module.name` for every underscore name of jaxmsk used in another file: imported
    (`from jaxmsk.x import _name`) or reached through a module (`jaxmsk.x._name`, `alias._name`),
    in jaxmsk, the tests, benchmarks and experiments. Private modules themselves may be
    imported (a package's files are its own); the names inside them are what must be public."""
    modules = set(_modules())
    found = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            here = _module_name(path)[0]
            aliases = {}  # local name -> jaxmsk module it is bound to
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name.split(".")[0] == "jaxmsk":
                            if a.asname:
                                aliases[a.asname] = a.name
                            else:
                                aliases["jaxmsk"] = "jaxmsk"
            for target, names in _imports(path):
                if not target.startswith("jaxmsk"):
                    continue
                for n in names:
                    full = f"{target}.{n}"
                    if full in modules:
                        aliases[n] = full
                    elif n.startswith("_") and not n.startswith("__"):
                        found.append(f"{path.relative_to(ROOT)}: {full}")
            for node in ast.walk(tree):
                if not isinstance(node, ast.Attribute):
                    continue
                chain, base = [node.attr], node.value
                while isinstance(base, ast.Attribute):
                    chain.append(base.attr)
                    base = base.value
                if not isinstance(base, ast.Name) or base.id not in aliases:
                    continue
                module = aliases[base.id]
                for part in reversed(chain):
                    if f"{module}.{part}" in modules or module in ("jaxmsk",) and \
                            f"jaxmsk.{part}" in modules:
                        module = f"{module}.{part}"
                        continue
                    if part.startswith("_") and not part.startswith("__") and module != here:
                        found.append(f"{path.relative_to(ROOT)}: {module}.{part}")
                    break
    return sorted(set(found))


def test_private_name_finder_sees_imports_and_attributes(tmp_path, monkeypatch):
    """The finder itself: an imported private name and one reached through a module alias
    are found; a private module imported as a module is not."""
    fake = tmp_path / "tests"
    fake.mkdir()
    (fake / "test_x.py").write_text(
        "import jaxmsk as msk\nfrom jaxmsk._simulate import _hidden\n"
        "from jaxmsk.models import _build\nmsk._simulate._other\n_build.BUILDERS\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "SOURCES", ("tests",))
    monkeypatch.setattr(sys.modules[__name__], "_modules",
                        lambda: {"jaxmsk._simulate": None, "jaxmsk.models": None,
                                 "jaxmsk.models._build": None})
    assert _private_imports() == ["tests/test_x.py: jaxmsk._simulate._hidden",
                                  "tests/test_x.py: jaxmsk._simulate._other"]


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_physics_does_not_import_io_or_commands():
    graph = _graph()
    low = ("jaxmsk._model", "jaxmsk._simulate", "jaxmsk._solvers", "jaxmsk._scale",
           "jaxmsk.muscle", "jaxmsk.skeleton", "jaxmsk.physics")
    high = ("jaxmsk.io", "jaxmsk.cli", "jaxmsk.models", "jaxmsk._learn", "jaxmsk._identify")
    arrows = [f"{m} -> {t}" for m, targets in graph.items() if m.startswith(low)
              for t in targets if t.startswith(high)]
    assert arrows == []


def test_few_loose_private_modules():
    loose = sorted(p.name for p in PACKAGE.glob("_*.py") if not p.name.startswith("__"))
    assert len(loose) <= 8, loose


def test_private_names_imported_across_files():
    found = _private_imports()
    assert len(found) <= 3, "\n".join(found)


def test_readme_is_for_users():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 400, len(readme)
    assert any("jaxmsk demo" in line for line in readme[:10])
    assert (ROOT / "benchmarks" / "README.md").is_file()
    assert (ROOT / "CHANGELOG.md").is_file()


def test_nothing_cites_files_outside_the_repository():
    needles = ("DESIGN.md", "REFERENCE.md", "../shared")
    hits = []
    for path in [ROOT / "README.md", *(p for top in (*SOURCES, "docs")
                                      for p in (ROOT / top).rglob("*")
                                      if p.suffix in (".py", ".md"))]:
        text = path.read_text()
        hits += [f"{path.relative_to(ROOT)}: {n}" for n in needles
                 if n in text and path != Path(__file__)]
    assert hits == []


def test_benchmarks_and_experiments_run_as_modules():
    """`python -m benchmarks.simulate` imports the oracles as `tests.helpers`: no script edits
    `sys.path` to find them (or this checkout's jaxmsk)."""
    edits = [str(p.relative_to(ROOT)) for top in ("benchmarks", "experiments")
             for p in (ROOT / top).rglob("*.py") if "sys.path" in p.read_text()]
    assert edits == []
    assert all((ROOT / d / "__init__.py").is_file() for d in
               ("benchmarks", "experiments", "experiments/transfer", "experiments/identify"))


def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:  # installed with the test extra: its absence is a broken install
        pytest.fail("ruff is not installed; `pip install -e .[test]` installs it.")
    run = subprocess.run([ruff, "check", "--quiet", str(ROOT)], capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
