"""Only tasks/storage knows URI schemes: no module outside it asks `is_s3`, nor compares or matches a URI
against an "s3://" or "file://" literal (messages and docstrings may still name them)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCHEMES = ("s3://", "file://", "s3:", "file:")
MATCHERS = {"startswith", "endswith", "removeprefix", "match", "fullmatch", "search", "partition", "split"}


def _scheme_literal(node: ast.AST) -> bool:
    """A string constant (or a tuple of them) that is, or begins with, a storage scheme."""
    if isinstance(node, ast.Tuple):
        return any(_scheme_literal(element) for element in node.elts)
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.lstrip("^").startswith(SCHEMES)
    )


def scheme_branches(source: str) -> list[int]:
    """Line numbers where code asks a URI's storage scheme itself."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(
            _scheme_literal(operand) for operand in [node.left, *node.comparators]
        ):
            found.append(node.lineno)
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "is_s3" or (name in MATCHERS and any(_scheme_literal(a) for a in node.args)):
                found.append(node.lineno)
    return sorted(set(found))


def test_the_checker_sees_every_form_of_scheme_branch():
    code = (
        "a = uri.startswith('s3://')\n"
        "b = uri.startswith(('hf:', 's3://'))\n"
        "c = store.is_s3(uri)\n"
        "d = urlparse(uri).scheme == 's3:' or 'file://' != uri[:7]\n"
        "e = re.match(r'^s3://', uri)\n"
        "f = uri.startswith('hf:') and store.is_local(uri)\n"
        "raise ValueError('use file://, s3:// or hf:')\n"
    )
    assert scheme_branches(code) == [1, 2, 3, 4, 5]


def test_no_module_outside_the_storage_package_branches_on_a_uri_scheme():
    roots = [REPO / "tasks", REPO / "dags"]
    storage = REPO / "tasks" / "storage"
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for root in roots
        for path in sorted(root.rglob("*.py"))
        if not path.is_relative_to(storage)
        for line in scheme_branches(path.read_text())
    ]
    assert offenders == [], "ask tasks.storage (store.is_local, backend_for, ...) instead: " + ", ".join(
        offenders
    )
