"""The shape of the package, checked on its syntax trees: imports point one way (no cycle,
counting imports inside functions), the engine is chosen once (no engine name compared
outside ``fusionrank.engines``), and behaviour is picked by capability, never by a model's
name (no registered model name compared or looked up outside the registry)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

import fusionrank as fr
from fusionrank.data.splits import SplitKind
from fusionrank.engines import ENGINES

PACKAGE = Path(fr.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:`` (imports for annotations only, never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def import_graph() -> dict[str, set[str]]:
    """Module -> the fusionrank modules it imports (anywhere in the file, functions included)."""
    modules = _modules()

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("fusionrank"):
                    graph[name].add(target if target in modules else resolve(target))
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_counting_imports_inside_functions():
    graph = import_graph()
    assert graph["fusionrank.pipelines.run"], "the scan found the run's imports"
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _constants(node: ast.AST) -> list[str]:
    """String constants a comparison compares against (directly or in a tuple/list/set)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [v for e in node.elts for v in _constants(e)]
    return []


def _compared_strings(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                out += [(node.lineno, value) for value in _constants(side)]
        if isinstance(node, ast.Subscript):  # models["ease"]
            out += [(node.lineno, value) for value in _constants(node.slice)]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            out += [(node.lineno, value) for value in _constants(node.args[0])] if node.args else []
    return out


def test_no_engine_is_compared_by_name_outside_the_engines():
    engines = PACKAGE / "engines"
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
        for path in _modules().values()
        if engines not in path.parents
        for line, value in _compared_strings(ast.parse(path.read_text(encoding="utf-8")))
        if value in ENGINES
    ]
    assert found == []


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal of a module but its docstrings."""
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_no_model_name_picks_behaviour_outside_the_registry():
    """No registered model's name is written in the package outside the registry: not as
    a default setting, a comparison or a key (a name that is also another concept's, a
    split kind or the dataset profile, cannot be told apart and is left out)."""
    other_concepts = set(get_args(SplitKind)) | {"profile"}
    names = set(fr.list_models()) - other_concepts
    assert {"ease", "pop", "lightgcn", "ease-content"} <= names
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
        for path in _modules().values()
        if path.name != "registry.py"
        for line, value in _literals(ast.parse(path.read_text(encoding="utf-8")))
        if value in names
    ]
    assert found == []


def test_the_scans_see_what_they_look_for():
    tree = ast.parse('if engine == "ray" or kind in ("local", "x"): models["ease"]; d.get("pop")')
    assert sorted(v for _, v in _compared_strings(tree)) == ["ease", "local", "pop", "ray", "x"]
    tree = ast.parse('"""doc"""\nclass C:\n    """doc"""\n    item_item: str = "ease"')
    assert [v for _, v in _literals(tree)] == ["ease"]


def test_every_error_the_package_raises_on_purpose_is_a_fusionrank_error_and_exported():
    import importlib

    errors = []
    for name, path in _modules().items():
        if ".testing" in name:
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module-level classes
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                cls = getattr(importlib.import_module(name), node.name)
                if issubclass(cls, Exception) and not issubclass(cls, Warning):
                    errors.append(cls)
    assert len(errors) >= 15
    assert [c.__name__ for c in errors if not issubclass(c, fr.FusionRankError)] == []
    assert [c.__name__ for c in errors if c.__name__ not in fr.__all__] == []


HEAVY_CHECK = (
    "heavy = {'torch', 'lightgbm', 'sklearn', 'transformers'}\n"
    "assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))\n"
)


def assert_stays_light(code: str) -> None:
    """Run ``code`` in a fresh interpreter, then check it imported none of the model
    libraries (a fresh process: this one has imported them all)."""
    import subprocess
    import sys

    script = "import sys\n" + code + HEAVY_CHECK + "print('light')\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "light", out.stderr


def test_the_public_names_load_on_first_use():
    """``import fusionrank`` is light (a notebook that only talks to a running service needs
    no torch or LightGBM), and every name of ``__all__`` resolves to its module's object."""
    assert_stays_light(
        "import fusionrank as fr\n" + HEAVY_CHECK + "fr.ServeClient, fr.FusionRankError, fr.BadRequestError\n"
    )
    assert set(fr.__all__) == {*fr._EXPORTS, "__version__"}
    for name in fr._EXPORTS:
        assert getattr(fr, name) is getattr(__import__(fr._EXPORTS[name], fromlist=[name]), name)
    assert "build_model" in dir(fr)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fr.nope  # noqa: B018 - the attribute access is the test


def test_the_command_line_help_loads_no_model_library():
    """``fusionrank --help`` (and every command's ``--help``) builds its text from the
    registries' names without importing torch, LightGBM, scikit-learn or transformers: a
    command imports what it runs when it runs (about 1 s for the help, was 3.5 s)."""
    assert_stays_light(
        "from typer.testing import CliRunner\n"
        "from fusionrank.pipelines.cli import app\n"
        "runner = CliRunner()\n"
        "for args in (['--help'], ['evaluate', '--help'], ['train', '--help'], ['embed', '--help'],\n"
        "             ['run', '--help'], ['data', 'synth', '--help'], ['serve', '--help']):\n"
        "    result = runner.invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "assert 'ials' in runner.invoke(app, ['train', '--help']).output\n"
    )
