"""The import rule: spec <- compiler <- runtime <- report <- orchestrate <- cli (and the
public API beside it), with protocol, errors and artifacts as ground every layer may use.
A module may import its own layer, the layers below it and the ground; never above.
Imports inside functions count: a lazy import is still a dependency."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "studyc"
GROUND = {"studyc", "studyc.protocol", "studyc.errors", "studyc.artifacts",  # "studyc": its __version__
          "studyc.quoting"}  # one quoting function per output format, for every layer that writes one
# Module (or package) -> its layer's rank. Modules beside the packages join the layer of
# what they do: editing YAML is the language's; promote, the stage flow and the sequential loop are
# orchestration; the CLI and the API are the top, side by side.
RANK = {"studyc.spec": 0, "studyc.yamledit": 0, "studyc.compiler": 1, "studyc.runtime": 2, "studyc.report": 3,
        "studyc.orchestrate": 4, "studyc.orchestrate_sequential": 4, "studyc.promote": 4, "studyc.stageflow": 4,
        "studyc.cli": 5, "studyc.api": 5}
LAYERS = list(RANK)


def layer(module: str) -> str | None:
    for name in LAYERS:
        if module == name or module.startswith(name + "."):
            return name
    return None


def imports(path: Path, module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            if base == "studyc":  # `from studyc import protocol` names a module; `__version__` the package
                found |= {f"studyc.{a.name}" if f"studyc.{a.name}" in GROUND or layer(f"studyc.{a.name}")
                          else "studyc" for a in node.names}
            else:
                found.add(base)
    return {m for m in found if m == "studyc" or m.startswith("studyc.")}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield path, name


def test_every_module_has_a_place():
    for _, name in modules():
        assert name in GROUND or layer(name) or name == "studyc", f"{name}: add it to a layer or the ground"


def test_no_module_imports_a_layer_above_it():
    broken = []
    for path, name in modules():
        if name == "studyc":  # the package exposes the trainer SDK and, lazily, the API
            continue
        own = RANK.get(layer(name) or "", -1)  # ground: rank -1, may import only ground
        for target in imports(path, name):
            if target in GROUND or any(target.startswith(g + ".") for g in GROUND - {"studyc"}):
                continue
            their = RANK[layer(target)]
            if their > own:
                broken.append(f"{name} imports {target}")
    assert broken == [], "imports against the layering:\n" + "\n".join(broken)


def test_the_rule_catches_an_upward_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from studyc.runtime.store import Store\n")
    targets = imports(path, "studyc.compiler.m")
    assert targets == {"studyc.runtime.store"} and RANK[layer("studyc.runtime.store")] > RANK["studyc.compiler"]
