"""Function length: no function or method in the product's code runs past 80 lines unless its
docstring says why.

The length counts every line from the ``def`` (its first decorator, if any) to its last line,
docstring and comments included. The reason is a docstring line that starts with ``Long because``
(after indentation), e.g. ``Long because it is one table of ops, one line each.``: a long but
linear table or an op dispatch, where splitting would scatter one decision over several places.
Everything else is split into named steps.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("posetracker", "tracker", "estimators", "association", "evaluation", "tools")
MAX_LINES = 80
MARKER = "Long because"


def long_functions(source: str, max_lines: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, length)`` of the functions in ``source`` longer than
    ``max_lines`` whose docstring has no line starting with :data:`MARKER`."""
    found = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                length = child.end_lineno - first + 1
                doc = ast.get_docstring(child) or ""
                reason = any(line.strip().startswith(MARKER) for line in doc.splitlines())
                if length > max_lines and not reason:
                    found.append((prefix + child.name, first, length))
                walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")

    walk(ast.parse(source), "")
    return found


def _product_files() -> list[Path]:
    return [f for pkg in PACKAGES if (ROOT / pkg).is_dir() for f in sorted((ROOT / pkg).rglob("*.py"))]


def test_no_long_function_without_a_reason():
    files = _product_files()
    assert len(files) > 50  # the walk found the code
    offenders = [f"{f.relative_to(ROOT)}:{line} {name} ({n} lines)"
                 for f in files for name, line, n in long_functions(f.read_text(encoding="utf-8"))]
    assert not offenders, (f"functions over {MAX_LINES} lines without a '{MARKER}' line in their docstring "
                           "(split them into named steps, or say why not):\n  "
                           + "\n  ".join(offenders))


def _function(name: str, body_lines: int, doc: str = "", decorated: bool = False) -> str:
    head = "@staticmethod\n" if decorated else ""
    docstring = f'    """{doc}"""\n' if doc else ""
    return head + f"def {name}():\n" + docstring + "    x = 0\n" * body_lines


def test_the_check_counts_lines_and_reads_the_reason():
    # 1 (def) + 80 body lines = 81 lines: too long; 79 body lines = 80: fine.
    assert long_functions(_function("f", 80)) == [("f", 1, 81)]
    assert long_functions(_function("f", 79)) == []
    # a decorator line counts; a docstring line counts
    assert long_functions(_function("f", 79, decorated=True)) == [("f", 1, 81)]
    assert long_functions(_function("f", 79, doc="One line.")) == [("f", 1, 81)]
    # the reason must open a docstring line; mentioning it elsewhere is not one
    assert long_functions(_function("f", 90, doc="Steps.\n\n    Long because it is one table.")) == []
    assert long_functions(_function("f", 90, doc="Not long because of this.")) != []
    # methods and nested functions are found with their qualified names
    nested = "class C:\n" + "".join("    " + line + "\n" for line in _function("m", 85).splitlines())
    assert long_functions(nested) == [("C.m", 2, 86)]
