"""The library's layers (docs/architecture.md): a module imports only from its own layer or the ones
below it, never a private name of another module, and the modules import one another without a cycle."""

import ast
from pathlib import Path

import editlab

ROOT = Path(editlab.__file__).resolve().parent
LAYERS = ["core", "facts", "model", "measure", "methods", "session", "runs", "cli"]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def imports(path: Path):
    """(imported module, names, line) for every import of editlab, lazy ones included."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("editlab"):
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("editlab"):
                    yield a.name, [], node.lineno


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def test_every_module_belongs_to_a_layer():
    stray = [m for m in MODULES if m not in ("editlab", "editlab.__main__") and layer(m) is None]
    assert not stray, f"modules outside the layers: {stray}"


def test_imports_go_down_the_layers_only():
    wrong = []
    for mod, path in MODULES.items():
        own = layer(mod)
        if own is None:
            continue
        for target, _, line in imports(path):
            there = layer(target)
            if there is not None and there > own:
                wrong.append(f"{mod}:{line} imports {target} ({LAYERS[own]} -> {LAYERS[there]})")
    assert not wrong, "\n".join(wrong)


def test_no_private_name_is_imported_from_another_module():
    wrong = [
        f"{mod}:{line} imports {name} from {target}"
        for mod, path in MODULES.items()
        for target, names, line in imports(path)
        for name in names
        if name.startswith("_") and target != mod
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = {}
    for mod, path in MODULES.items():
        deps = set()
        for target, names, _ in imports(path):
            # `from editlab.x import y` depends on editlab.x.y when that is a module, else on editlab.x
            subs = {f"{target}.{n}" for n in names} & MODULES.keys()
            deps |= subs or ({target} & MODULES.keys())
        # a package's __init__ is where its re-exports come from, not a module of the layers' graph
        graph[mod] = {d for d in deps if d != mod and not MODULES[d].name == "__init__.py"}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m) :] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            visit(d)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
