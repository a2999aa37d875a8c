"""The package's import rules, read from the source with ast:
- layers: */tasks.py -> the namespace's other modules (steps) -> */facts.py -> core/; a module never
  imports a higher layer, and core imports only core;
- only */tasks.py imports invoke (and core/engine.py for Exit, cli.py and __init__.py for the CLI);
- function-level imports only in */tasks.py (the lazy imports that keep `inv --list` fast);
- no cycles; no module imports another module's _private name."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "osk8s_tasks"
INVOKE_OK = {"cli", "__init__", "core.engine"}


# programs run by path, some in the loopback OpenStack's own venv (loopback.py, its services, the
# drivers installed there): scripts, not modules of this package
SCRIPTS = PKG / "embedded" / "openstack"


def modules(root: Path = PKG) -> dict[str, ast.Module]:
    return {
        ".".join(p.relative_to(root).with_suffix("").parts): ast.parse(p.read_text())
        for p in root.rglob("*.py")
        if SCRIPTS not in p.parents
    }


def layer(mod: str) -> int:
    leaf = mod.rsplit(".", 1)[-1]
    if mod.startswith("core.") or mod in ("__init__", "cli"):
        return {"__init__": 4, "cli": 4}.get(mod, 0)
    return {"tasks": 3, "facts": 1}.get(leaf, 2)


def imports(tree: ast.AST, in_function: bool = False):
    """(module imported, names, inside a function?) for every import."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            target = node.module if node.level == 0 else "osk8s_tasks" + "." * (node.level > 1) + (node.module or "")
            yield target, [a.name for a in node.names], in_function
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], in_function
        else:
            yield from imports(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def problems(mods: dict[str, ast.Module]) -> list[str]:
    out, graph = [], {m: set() for m in mods}
    for mod, tree in mods.items():
        for target, names, lazy in imports(tree):
            if target.split(".")[0] == "invoke" and mod not in INVOKE_OK and not mod.endswith("tasks"):
                out.append(f"{mod} imports invoke")
            if not target.startswith("osk8s_tasks"):
                if lazy and not mod.endswith("tasks") and target.split(".")[0] not in ("osk8s_tasks",):
                    out.append(f"{mod} imports {target} inside a function")
                continue
            if lazy and not mod.endswith("tasks"):
                out.append(f"{mod} imports {target} inside a function")
            dest = target.removeprefix("osk8s_tasks").lstrip(".") or "__init__"
            candidates = [f"{dest}.{n}" for n in names if f"{dest}.{n}" in mods] or [dest]
            for d in candidates:
                if d not in mods:
                    continue
                graph[mod].add(d)
                if layer(d) > layer(mod):
                    out.append(f"{mod} (layer {layer(mod)}) imports {d} (layer {layer(d)})")
                if mod.startswith("core.") and not d.startswith("core."):
                    out.append(f"core module {mod} imports {d}")
            out += [f"{mod} imports {dest}.{n}, a private name" for n in names if n.startswith("_") and n != "__version__"]
    seen, stack = set(), []

    def visit(m):
        if m in stack:
            out.append("import cycle: " + " -> ".join(stack[stack.index(m) :] + [m]))
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(graph[m]):
            visit(d)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    return out


def test_the_package_keeps_its_import_rules():
    assert problems(modules()) == []


def test_a_planted_cycle_is_found(tmp_path):
    for name, text in {
        "core/__init__.py": "",
        "core/a.py": "from osk8s_tasks.core import b\n",
        "core/b.py": "from osk8s_tasks.core.a import x\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert any(p.startswith("import cycle: core.a -> core.b -> core.a") for p in problems(modules(tmp_path)))


def test_a_step_importing_its_tasks_or_invoke_is_found(tmp_path):
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "steps.py").write_text("import invoke\n\ndef f():\n    from osk8s_tasks.host import tasks\n")
    (tmp_path / "host" / "tasks.py").write_text("")
    found = problems(modules(tmp_path))
    assert "host.steps imports invoke" in found and "host.steps imports osk8s_tasks.host inside a function" in found
    assert "host.steps (layer 2) imports host.tasks (layer 3)" in found
