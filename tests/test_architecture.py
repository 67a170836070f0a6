"""The layers of the library point one way, read from the source's import statements.

    coopseg.cli          the command-line programs
    experiments          the paper's rows and the machinery that trains them
    coopseg.training     train(): the two-agent step, its loop, inputs, initialisation
    coopseg.serving      SavedModel export, photo preprocessing, prediction
    coopseg.evaluation   metrics, evaluation passes, reports and figures
    coopseg.runs         a run directory on disk: config, checkpoints, lock
    coopseg.models       Keras functional builders
    data_pipelines       readers, converters, tf.data pipelines, synthetic data
    coopseg.config       dataclass configs and their checks
    coopseg.utils        console, progress bars, atomic writes

A module may import its own package and any package *below* it, never one above or
beside it (models and data_pipelines know nothing of each other), and no two modules
import each other, even through others. Imports of the project's own modules sit at
the top of a module, never inside a function, except at the CLI edge (``CLI_EDGE``),
where the heavy ones wait for ``main`` so ``--help`` answers without TensorFlow.
Every module of these packages and of benchmarks/ says what it is for in a docstring of at
most six lines; the details sit with the code they are about or in docs/.
"""
from __future__ import annotations

import ast
import os
from typing import Dict, Iterator, List, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("coopseg", "data_pipelines", "experiments")
# Outside the layers, but held to the same docstring rule.
DOCUMENTED = PACKAGES + ("benchmarks",)
MAX_DOCSTRING_LINES = 6
# The command-line programs: the one place a project import may sit inside a function.
CLI_EDGE = ("coopseg.cli", "experiments.run")
RANK: Dict[str, int] = {
    "coopseg.utils": 0,
    "coopseg.config": 1,
    "data_pipelines": 2, "coopseg.models": 2,
    "coopseg.evaluation": 3, "coopseg.runs": 3,
    "coopseg.serving": 4,
    "coopseg.training": 5,
    "experiments": 6,
    "coopseg.cli": 7,
}


def layer_of(module: str) -> str:
    """The longest RANK key that ``module`` is (or is inside)."""
    matches = [k for k in RANK if module == k or module.startswith(k + ".")]
    assert matches, f"{module} belongs to no layer: add its package to RANK"
    return max(matches, key=len)


def modules(packages: Tuple[str, ...] = PACKAGES) -> Iterator[Tuple[str, str]]:
    for top in packages:
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield module.removesuffix(".__init__"), path


def project_imports(path: str) -> List[Tuple[str, int, bool]]:
    """(imported module, line, inside a function) for each import of a project module."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    in_function: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PACKAGES and target != "coopseg":
                found.append((target, node.lineno, id(node) in in_function))
    return found


def docstring_violations(paths: List[str]) -> List[Tuple[str, int]]:
    """(path, docstring lines) of each module whose docstring is missing (0 lines) or longer
    than ``MAX_DOCSTRING_LINES``, counted as written (``clean=False``). An empty file (a bare
    ``__init__.py``) has nothing to explain."""
    found = []
    for path in paths:
        source = open(path, encoding="utf-8").read()
        if not source.strip():
            continue
        doc = ast.get_docstring(ast.parse(source, path), clean=False)
        lines = len(doc.splitlines()) if doc else 0
        if not 1 <= lines <= MAX_DOCSTRING_LINES:
            found.append((path, lines))
    return found


def module_graph() -> Dict[str, Set[str]]:
    """Module -> the project modules it imports (``from pkg import sub`` counts ``sub``)."""
    paths = dict(modules())
    graph: Dict[str, Set[str]] = {}
    for module, path in paths.items():
        edges = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in paths)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in paths:
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(paths)
                edges.update(subs or {node.module})
        edges.discard(module)
    return graph


def import_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    cycles: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_every_import_points_down_or_stays_in_its_package():
    wrong = []
    for module, path in modules():
        if module == "coopseg":
            continue
        own = layer_of(module)
        for target, line, _ in project_imports(path):
            other = layer_of(target)
            if other != own and RANK[other] >= RANK[own]:
                wrong.append(f"{os.path.relpath(path, ROOT)}:{line} ({own}, layer {RANK[own]}) "
                             f"imports {target} ({other}, layer {RANK[other]})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def at_cli_edge(module: str) -> bool:
    return any(module == edge or module.startswith(edge + ".") for edge in CLI_EDGE)


def test_no_project_import_inside_a_function():
    """Except at the CLI edge; deferred imports there still point down (checked above)."""
    inside = [f"{os.path.relpath(path, ROOT)}:{line} imports {target}"
              for module, path in modules() if not at_cli_edge(module)
              for target, line, in_function in project_imports(path) if in_function]
    assert not inside, "move these imports to the top of their module:\n" + "\n".join(inside)


def test_no_import_cycle_between_modules():
    """Within a package too: a cycle is an import order away from a crash."""
    assert import_cycles(module_graph()) == []


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checks above see what they claim to: an upward and a function-level import."""
    bad = tmp_path / "bad.py"
    bad.write_text("from coopseg.cli.train import main\n\n\ndef f():\n"
                   "    import coopseg.training.train\n")
    found = project_imports(str(bad))
    assert found == [("coopseg.cli.train", 1, False), ("coopseg.training.train", 5, True)]
    assert RANK[layer_of("coopseg.cli.train")] > RANK[layer_of("coopseg.models.jointseg.network")]
    assert layer_of("coopseg.models") == "coopseg.models"


def test_every_module_docstring_says_what_it_is_for_in_at_most_six_lines():
    """What a module is for fits in six lines; why its code is as it is belongs in the
    docstring of the function or class concerned, a comment beside the code, or docs/."""
    wrong = [f"{os.path.relpath(path, ROOT)} ({lines} lines)"
             for path, lines in docstring_violations([p for _, p in modules(DOCUMENTED)])]
    assert not wrong, (f"module docstrings missing or over {MAX_DOCSTRING_LINES} lines:\n"
                       + "\n".join(wrong))


def test_the_rule_catches_a_long_or_missing_module_docstring(tmp_path):
    """Seven lines or none fail; six lines and an empty ``__init__.py`` pass."""
    def docstring(lines: int) -> str:
        return '"""' + "\n".join(f"line {i}" for i in range(lines)) + '\n"""\nX = 1\n'

    files = {"six.py": docstring(6), "seven.py": docstring(7), "none.py": "X = 1\n",
             "__init__.py": ""}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = docstring_violations([str(tmp_path / name) for name in files])
    assert found == [(str(tmp_path / "seven.py"), 7), (str(tmp_path / "none.py"), 0)]


def test_the_package_itself_imports_nothing():
    """``import coopseg`` must stay cheap and free of side effects."""
    assert project_imports(os.path.join(ROOT, "coopseg", "__init__.py")) == []


def test_every_package_directory_is_a_regular_package():
    """setup.py's find_packages skips a directory without __init__.py: it would be
    missing from an installed (non-editable) coopseg."""
    missing = [os.path.relpath(dirpath, ROOT)
               for top in PACKAGES for dirpath, dirs, files in os.walk(os.path.join(ROOT, top))
               if "__pycache__" not in dirpath and any(f.endswith(".py") for f in files)
               and "__init__.py" not in files]
    assert not missing, f"add an __init__.py to: {', '.join(missing)}"
