"""The shape of `tasks/`: packages that say what they own, no import cycles, modules a reader can hold
in their head, and function-local imports only where they keep a light process light.

Read with the standard library's `ast`, so nothing under test is imported.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from tests.conftest import REPO

TASKS = REPO / "tasks"
MAX_LINES = 400
# A module may run longer when its docstring says why, in these words.
LONG_REASON = "longer than 400 lines because"
# Heavy or optional third-party packages: importing them inside a function is what keeps the DAG
# processor, the api-server and the `tunerflow` CLI light, so such imports need no comment.
HEAVY = {
    "torch", "transformers", "peft", "trl", "accelerate", "datasets", "evaluate", "safetensors", "gguf",
    "onnx", "onnxruntime", "optimum", "onnx_ir", "boto3", "botocore", "kubernetes", "airflow", "numpy",
    "pyarrow", "pandas", "matplotlib", "sacrebleu", "rouge_score", "requests", "urllib3", "filelock",
    "yaml", "jinja2", "deepspeed", "bitsandbytes", "liger_kernel", "tensorboard", "psutil", "jieba",
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(TASKS.rglob("*.py"))}


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _resolve(name: str) -> str | None:
    """The module of ours that `import name` loads (a name imported from a package may be a module)."""
    modules = _modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level or not node.module:
        return []
    return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]


def _graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, at the top or inside a function alike."""
    graph: dict[str, set[str]] = {}
    for name, path in _modules().items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _imported(node):
                    module = _resolve(target) if target.split(".")[0] == "tasks" else None
                    # Importing a submodule runs its package's __init__, never a cycle of its own.
                    if module and module != name and not name.startswith(module + "."):
                        edges.add(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle to report."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_tasks_has_no_import_cycles():
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles (function-local imports count): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_every_package_says_what_it_owns():
    packages = [path for path in TASKS.rglob("__init__.py")]
    assert len(packages) >= 10
    missing = [str(p.relative_to(REPO)) for p in packages if not ast.get_docstring(_tree(p))]
    assert missing == [], f"packages without a docstring saying what they own: {missing}"


def test_every_module_has_a_docstring():
    missing = [str(p.relative_to(REPO)) for p in _modules().values() if not ast.get_docstring(_tree(p))]
    assert missing == [], f"modules without a docstring: {missing}"


def test_the_top_level_of_tasks_holds_only_the_step_entrypoints():
    """`python -m tasks.<step> --job <uri>` is the command in every stored spec and pod; everything
    else lives in a package by concern."""
    top = sorted(p.stem for p in TASKS.glob("*.py") if p.stem != "__init__")
    assert top == [
        "check_export",
        "compare_models",
        "evaluate",
        "export",
        "merge",
        "prepare_dataset",
        "train",
    ]
    for stem in top:
        source = (TASKS / f"{stem}.py").read_text(encoding="utf-8")
        assert 'if __name__ == "__main__":' in source, f"tasks/{stem}.py is not runnable with -m"
        assert len(source.splitlines()) <= 60, f"tasks/{stem}.py should stay a thin entrypoint"


def test_no_module_is_over_400_lines_without_a_reason():
    long = []
    for path in _modules().values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and LONG_REASON not in (ast.get_docstring(_tree(path)) or ""):
            long.append(f"{path.relative_to(REPO)} ({lines} lines)")
    assert long == [], f"split these along their seams, or say at their top why not: {long}"


def _local_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function body."""
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom) and _imported(inner):
                    found.append((inner.lineno, _imported(inner)[0]))
    return found


def test_function_local_imports_say_why():
    """An import inside a function is allowed to keep a light process (the DAG processor, the
    api-server, the CLI, a step that may not need it) from loading something heavy, and then a comment on
    or just above the line says so. Heavy third-party packages (HEAVY) are self-explanatory."""
    unexplained = []
    for path in _modules().values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for lineno, module in _local_imports(path):
            if module.split(".")[0] in HEAVY:
                continue
            if not any("#" in line for line in lines[max(lineno - 3, 0) : lineno]):
                unexplained.append(f"{path.relative_to(REPO)}:{lineno} imports {module}")
    assert unexplained == [], "function-local imports without a comment saying why: " + "; ".join(unexplained)


def _allowed(package: Path) -> set[str]:
    """The `tasks.*` names the package's docstring lists after "May import", up to the paragraph's end."""
    docstring = ast.get_docstring(_tree(package / "__init__.py")) or ""
    paragraph = next((p for p in docstring.split("\n\n") if "May import" in p), "")
    return set(re.findall(r"`(tasks(?:\.\w+)+)`", paragraph[paragraph.find("May import") :]))


def _covered(module: str, allowed: set[str]) -> bool:
    # `tasks.data.plugins` allows that module; `tasks.data` the whole package. Importing a package's
    # __init__ on the way to an allowed module (`from tasks.data import plugins`) is covered too.
    return any(
        module == name or module.startswith(name + ".") or name.startswith(module + ".") for name in allowed
    )


def test_the_docstring_parser_reads_the_declared_imports(tmp_path):
    assert _covered("tasks.data.plugins", {"tasks.data.plugins"})
    assert _covered("tasks.data", {"tasks.data.plugins"})
    assert not _covered("tasks.data.scan", {"tasks.data.plugins"})
    assert _covered("tasks.storage.store", {"tasks.storage"})


def test_every_package_imports_only_what_its_docstring_allows():
    """The package map stays true: each package says what it may import (`May import ...` in its
    docstring), and importing anything else from another package fails here."""
    graph = _graph()
    packages = sorted(p.parent for p in TASKS.glob("*/__init__.py"))
    undeclared = []
    for package in packages:
        name = _module_name(package / "__init__.py")
        allowed = _allowed(package)
        assert allowed, f"{name}'s docstring says nothing it may import ('May import `tasks.x`, ...')"
        for module, targets in graph.items():
            if module != name and not module.startswith(name + "."):
                continue
            for target in sorted(targets):
                if target == name or target.startswith(name + "."):
                    continue
                if not _covered(target, allowed):
                    undeclared.append(f"{module} imports {target}")
    assert undeclared == [], "imports a package's docstring does not allow: " + "; ".join(undeclared)
