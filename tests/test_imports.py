"""The import graph of `disentangle_jax` (with `third_party/` as `disentangle_jax.third_party`) has no cycle.

Imports inside functions count too: a deferred import that closes a cycle still couples the two modules.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for top, prefix in (("disentangle_jax", ()), ("third_party", ("disentangle_jax", "third_party"))):
    for f in (ROOT / top).rglob("*.py"):
      parts = f.relative_to(ROOT).with_suffix("").parts
      parts = (prefix + parts[1:]) if prefix else parts
      out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
  return out


def _graph(mods: dict[str, pathlib.Path]) -> dict[str, set[str]]:
  graph = {}
  for name, f in mods.items():
    package = name if f.name == "__init__.py" else name.rpartition(".")[0]
    deps = set()
    for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
      if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
          base = ".".join(anchor + ([node.module] if node.module else []))
        deps |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}
      elif isinstance(node, ast.Import):
        deps |= {a.name for a in node.names}
    graph[name] = {d for d in deps if d in mods and d != name}
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  state, found = {}, []

  def visit(u: str, path: list[str]) -> None:
    state[u] = "open"
    for v in sorted(graph[u]):
      if state.get(v) == "open":
        found.append(path[path.index(v) :] + [u, v] if v in path else [u, v])
      elif v not in state:
        visit(v, path + [u])
    state[u] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [])
  return found


def test_no_import_cycles():
  graph = _graph(_modules())
  assert len(graph) > 50 and "disentangle_jax.checkpoints" in graph["disentangle_jax.inference"]
  assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
