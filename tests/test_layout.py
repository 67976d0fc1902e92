"""Every path under the data root comes from ``pipeline.layout.Layout`` (issue 12 item 2).

The guard reads the package sources and reports each place that spells out one of Layout's top-level names
(``tokenizer``, ``token_bins``, ``mixture``, ...: derived from Layout itself) as a path: the right side of
``/``, an argument of ``Path(...)`` / ``os.path.join(...)``, or a module constant holding such a name that is
then joined with ``/``. What lies inside a folder (``meta.json`` of the bins, a cache's files) belongs to the
stage that writes it; the top-level names belong to Layout alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline.layout import Layout

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("assets", "mixers", "pipeline", "proxies")
LAYOUT_FILE = REPO / "pipeline" / "layout.py"
NAMES = frozenset(Layout.at("/data").top_level_names())

def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if p != LAYOUT_FILE)


def names_a_layout_path(value: object) -> bool:
    """A string whose first path component is one of Layout's top-level names."""
    if not isinstance(value, str) or not value:
        return False
    return Path(value).parts[:1] and Path(value).parts[0] in NAMES


def layout_constants(trees: dict[Path, ast.Module]) -> set[str]:
    """Module-level ``NAME = "<layout name>"`` anywhere in the packages (``BINS_DIR = "token_bins"``)."""
    out = set()
    for tree in trees.values():
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                    and names_a_layout_path(node.value.value):
                out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def _is_path_call(node: ast.Call) -> bool:
    f = node.func
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    return name in {"Path", "PurePath", "join", "joinpath"}


def offenders_in(tree: ast.Module, constants: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and names_a_layout_path(right.value):
                found.append((node.lineno, f'/ "{right.value}"'))
            elif isinstance(right, (ast.Name, ast.Attribute)):
                name = right.id if isinstance(right, ast.Name) else right.attr
                if name in constants:
                    found.append((node.lineno, f"/ {name}"))
        elif isinstance(node, ast.Call) and _is_path_call(node):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and names_a_layout_path(arg.value):
                    found.append((node.lineno, f'{ast.unparse(node.func)}("{arg.value}")'))
    return sorted(found)


def layout_offenders() -> list[tuple[str, int, str]]:
    """``(path, line, what)`` for every offender, in file and line order."""
    trees = {p: ast.parse(p.read_text(), filename=str(p)) for p in sources()}
    constants = layout_constants(trees)
    return sorted((p.relative_to(REPO).as_posix(), line, what) for p, tree in trees.items()
                  for line, what in offenders_in(tree, constants))


def test_no_data_root_path_literal_outside_layout():
    offenders = [f"{path}:{line}: {what}" for path, line, what in layout_offenders()]
    assert not offenders, ("paths under the data root spelled out instead of taken from pipeline.layout.Layout "
                           "(add a name there):\n" + "\n".join(offenders))


def test_guard_finds_each_kind_of_literal():
    code = ('BINS = "token_bins"\n'
            'a = root / "tokenizer" / "tokenizer.json"\n'
            'b = Path("mixture/mixture.json")\n'
            'c = root / BINS\n'
            'd = os.path.join(root, "proxy_runs")\n'
            'e = root / "documents" / "stats.json"\n'
            'f = {"name": "training_set"}\n')
    tree = ast.parse(code)
    found = offenders_in(tree, layout_constants({Path("x.py"): tree}))
    assert [line for line, _ in found] == [2, 3, 4, 5]


def test_layout_names_are_derived_from_layout():
    assert {"tokenizer", "token_bins", "mixture", "proxy_runs", "training_set"} <= NAMES
    assert Layout.at("/d").mixture_json.relative_to("/d").parts[0] in NAMES
