"""The layering of the repository (docs/layout.md), checked on every Python file's syntax tree:

    modeling_sfar/remote_code   the files shipped to the Hub: its siblings (relative) + torch, transformers, numpy,
                                huggingface_hub and the standard library, nothing else
    modeling_sfar, hub_cards    the library: the shipped code and each other, never the layers above; inside it,
                                its sub-packages in the order of LIBRARY_LAYERS (each imports its own layer and
                                the ones below: generation, which writes text sets with language models, stands
                                beside training, evaluation, the model card and the demo, not on them)
    datasets_scripts            dataset builders and generators (command lines) over the library
    scripts                     leaves over the library: no script imports another or touches sys.path
    tests, benchmarks           over everything
    space                       the Space's app: runs on the Hub without this package, so imports none of it but
                                the self-contained library files its repo carries a copy of (SPACE_LIBRARY_FILES)

Imports only go down, and the library's modules import each other without a cycle.
"""

from __future__ import annotations

import ast
import importlib.machinery
import sys
from pathlib import Path

import pytest

from modeling_sfar.hub.push import SPACE_LIBRARY_FILES

REPO = Path(__file__).resolve().parents[2]
# Our top-level import names, and the layer each lives in (higher layers may import lower ones, not the reverse).
PACKAGES = ("modeling_sfar", "hub_cards", "datasets_scripts", "scripts", "tests", "benchmarks", "space")
SHIPPED_THIRD_PARTY = {"torch", "transformers", "numpy", "huggingface_hub"}
# What the shipped code imports only when it is used: the video processor when it decodes or augments (transformers'
# own video processing needs them too), the zero-shot pipeline when it reads a sub-text dataset or an entity corpus;
# never at module level, so loading the model needs only the packages above.
SHIPPED_WHEN_USED = {"av", "torchvision", "datasets", "pyarrow"}
LIBRARY_MAY_IMPORT = {"modeling_sfar", "hub_cards"}
ALLOWED = {
    "library": LIBRARY_MAY_IMPORT,
    "datasets_scripts": LIBRARY_MAY_IMPORT | {"datasets_scripts"},
    "scripts": LIBRARY_MAY_IMPORT | {"datasets_scripts"},
    "space": set(),
}
SPACE_MODULES = {".".join(("modeling_sfar", *Path(name).with_suffix("").parts)) for name in SPACE_LIBRARY_FILES}
SKIPPED_FOLDERS = {".venv", ".venv-generate", ".cache", "build", "outputs", "runs", ".git"}
# The library's sub-packages from the bottom up: a module imports modules of its own layer or of a lower one. The
# shipped files are below them all; `hub_cards` (templates) is a leaf; `testing_utils` builds tiny checkpoints and
# videos. A layer that imports itself is the sub-package's own business (no cycle: see the test below).
LIBRARY_LAYERS = (
    {"remote_code"},
    {"hub_cards", "hub.sources", "hub.staging", "evaluation.metrics"},
    {"conversion", "data", "demo.plots", "testing_utils"},
    {"generation"},
    {"families"},
    {"evaluation", "hub"},
    {"training"},
    {"demo"},
    {"__init__"},
)


def layer(relative: Path) -> str:
    """The layer of a file, from its path inside the repository."""
    parts = relative.parts
    if parts[:2] == ("modeling_sfar", "remote_code"):
        return "remote_code"
    if parts[0] in ("modeling_sfar", "hub_cards"):
        return "library"
    if len(parts) == 1:
        return "top"  # setup helpers and the like, if any: over everything
    return parts[0]


def library_layer(module: str) -> int | None:
    """The layer (an index of LIBRARY_LAYERS) of a module of ours, by its dotted name; None outside the library."""
    if module == "hub_cards" or module.startswith("hub_cards."):
        return 1
    if module == "modeling_sfar":
        return len(LIBRARY_LAYERS) - 1
    if not module.startswith("modeling_sfar."):
        return None
    parts = module.split(".")[1:]
    # the most specific entry that names the module: "hub.sources" before "hub"
    for depth in (2, 1):
        name = ".".join(parts[:depth])
        for index, layer in enumerate(LIBRARY_LAYERS):
            if name in layer:
                return index
    return None


def script_names() -> set[str]:
    return {p.stem for p in (REPO / "scripts").glob("*.py")}


def imported(tree: ast.AST) -> list[tuple[int, int, str, bool]]:
    """(line, relative level, module, inside a function) of every import in `tree`, also those inside functions
    (imported when they run)."""
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            out.extend((node.lineno, 0, alias.name, in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.level, node.module or "", in_function))
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return out


def touches_sys_path(tree: ast.AST) -> list[int]:
    """Lines that read or change `sys.path` (a script that does so can import its neighbours as modules)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]


def absolute_targets(relative: Path, tree: ast.AST) -> list[tuple[int, list[str]]]:
    """(line, dotted names) of every import in the library file at `relative`: the modules it may bind, relative
    imports resolved against the file's package (`from ..hub import cards` in modeling_sfar/generation/x.py:
    modeling_sfar.hub and modeling_sfar.hub.cards)."""
    package = relative.with_suffix("").parts[:-1]  # where a relative import starts (for __init__.py, its own package)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, [alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(filter(None, (base, node.module or "")))
            out.append((node.lineno, [module, *(f"{module}.{alias.name}" for alias in node.names)]))
    return out


def violations(relative: Path, source: str) -> list[str]:
    """What the file at `relative` (inside the repository) with `source` imports against its layer's rules."""
    where = layer(relative)
    tree = ast.parse(source, filename=str(relative))
    problems = []
    for line, level, module, in_function in imported(tree):
        top = module.split(".")[0]
        at = f"{relative}:{line}"
        if where == "remote_code":
            if level > 1:
                problems.append(f"{at}: shipped code imports outside its folder (from {'.' * level}{module})")
            elif level == 0 and top not in SHIPPED_THIRD_PARTY and top not in sys.stdlib_module_names:
                if not (in_function and top in SHIPPED_WHEN_USED):
                    allowed = sorted(SHIPPED_THIRD_PARTY) + [f"{name} inside functions" for name in SHIPPED_WHEN_USED]
                    problems.append(f"{at}: shipped code imports {module!r} (allowed: siblings, stdlib, {allowed})")
            continue
        if level > 0:
            continue  # relative: inside the file's own package, which is of its own layer
        if where == "scripts" and top in script_names():
            problems.append(f"{at}: a script imports the script {top!r}; shared code belongs in the library")
        if where == "space" and module in SPACE_MODULES:
            continue  # a copy sits beside app.py in the Space's repo
        if where in ALLOWED and top in PACKAGES and top not in ALLOWED[where]:
            problems.append(f"{at}: the {where} layer imports {module!r}, a layer above it")
    if where == "scripts":
        problems.extend(f"{relative}:{line}: a script touches sys.path" for line in touches_sys_path(tree))
    if where == "library":
        own = library_layer(".".join(relative.with_suffix("").parts))
        for line, modules in absolute_targets(relative, tree):
            # what the import binds: the names after `import` (`from ..hub import sources` binds hub.sources)
            for target in modules[1:] or modules:
                theirs = library_layer(target)
                if own is not None and theirs is not None and theirs > own:
                    problems.append(f"{relative}:{line}: a lower library layer imports {target!r}, a layer above it")
    return problems


def python_files() -> list[Path]:
    files = []
    for path in sorted(REPO.rglob("*.py")):
        relative = path.relative_to(REPO)
        if not SKIPPED_FOLDERS.intersection(relative.parts[:-1]):
            files.append(relative)
    return files


def test_every_file_imports_only_its_layer_and_below():
    files = python_files()
    assert Path("modeling_sfar/remote_code/modeling_sfar.py") in files and Path("scripts/train.py") in files
    problems = [p for relative in files for p in violations(relative, (REPO / relative).read_text())]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "relative, source, expected",
    [
        ("scripts/demo.py", "import train\n", "imports the script 'train'"),
        ("scripts/demo.py", "import sys\nsys.path.insert(0, 'x')\n", "touches sys.path"),
        ("modeling_sfar/hub/cards.py", "def f():\n    from datasets_scripts import build_dataset\n", "a layer above"),
        ("modeling_sfar/training/trainer.py", "import tests.conftest\n", "a layer above"),
        ("datasets_scripts/build_dataset.py", "from scripts import train\n", "a layer above"),
        ("modeling_sfar/remote_code/modeling_sfar.py", "from ..training import SfarTrainer\n", "outside its folder"),
        ("modeling_sfar/remote_code/modeling_sfar.py", "import datasets\n", "imports 'datasets'"),
        ("modeling_sfar/remote_code/modeling_sfar.py", "from modeling_sfar import x\n", "imports 'modeling_sfar'"),
        ("modeling_sfar/generation/subtexts.py", "from ..training.trainer import x\n", "a lower library layer"),
        ("modeling_sfar/generation/answers.py", "def f():\n    import modeling_sfar.demo.recipe\n", "a lower library"),
        ("modeling_sfar/generation/__init__.py", "from ..hub import cards\n", "a lower library layer"),
        ("space/app.py", "from modeling_sfar import SfarModel\n", "a layer above"),
        ("modeling_sfar/data/datasets.py", "from ..training.run import run_training\n", "a lower library layer"),
        ("modeling_sfar/families/sfar.py", "from modeling_sfar.training import run\n", "a lower library layer"),
        ("modeling_sfar/evaluation/predict.py", "from ..training.trainer import x\n", "a lower library layer"),
    ],
)
def test_the_check_finds_each_kind_of_violation(relative, source, expected):
    (problem,) = violations(Path(relative), source)
    assert expected in problem and relative in problem


def test_allowed_imports_pass_the_check():
    shipped = Path("modeling_sfar/remote_code/video_processing_sfar.py")
    allowed = (
        "import os\nfrom .configuration_sfar import X\nfrom transformers import PreTrainedModel\n"
        "from huggingface_hub.dataclasses import strict\ndef decode():\n    import av\n"
    )
    assert violations(shipped, allowed) == []
    (problem,) = violations(shipped, "import av\n")  # PyAV at module level: loading the model would need it
    assert "imports 'av'" in problem
    assert violations(Path("scripts/train.py"), "from modeling_sfar.training.run import run_training\n") == []
    assert violations(Path("tests/test_x.py"), "import sys\nsys.path.insert(0, 'scripts')\nimport train\n") == []


def test_the_library_imports_itself_without_a_cycle():
    """Module-level imports among modeling_sfar's modules form no cycle (a cycle imports half-initialised modules)."""
    modules = {}
    for relative in python_files():
        if layer(relative) not in ("library", "remote_code") or relative.parts[0] != "modeling_sfar":
            continue
        name = ".".join(relative.with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = relative
    graph = {}
    for name, relative in modules.items():
        package = name if relative.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.parse((REPO / relative).read_text()).body:  # module level only
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                targets = [f"{base}.{node.module}" if node.module else base]
                targets += [f"{targets[0]}.{alias.name}" for alias in node.names]
            else:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges

    def cycle_from(start, path, seen):
        for nxt in sorted(graph[path[-1]]):
            if nxt == start:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                found = cycle_from(start, [*path, nxt], seen)
                if found:
                    return found
        return None

    for name in graph:
        found = cycle_from(name, [name], {name})
        assert found is None, "import cycle: " + " -> ".join(found)


def test_no_script_shadows_a_library():
    """`python scripts/x.py` puts scripts/ first on sys.path: a script named like a library (evaluate.py) would
    replace that library for everything the script imports, the metrics among them."""
    ours = {REPO, *(REPO / f for f in ("scripts", "datasets_scripts", "benchmarks", "tests"))}
    outside = [p for p in sys.path if p and Path(p).resolve() not in ours]  # site-packages, stdlib
    for folder in ("scripts", "datasets_scripts", "benchmarks"):
        for script in (REPO / folder).glob("*.py"):
            if script.stem == "__init__":
                continue
            spec = importlib.machinery.PathFinder.find_spec(script.stem, outside)
            assert spec is None, f"{folder}/{script.name} shadows the installed module {spec.origin}"
            assert script.stem not in PACKAGES, f"{folder}/{script.name} shadows our package {script.stem}"
            assert script.stem not in sys.stdlib_module_names, f"{folder}/{script.name} shadows the standard library"


@pytest.mark.parametrize("name", SPACE_LIBRARY_FILES)
def test_the_library_files_the_space_copies_are_self_contained(name):
    """A Space repo holds a copy of these files beside app.py, without this package: they import none of it."""
    tree = ast.parse((REPO / "modeling_sfar" / name).read_text())
    ours = [(line, module) for line, level, module, _ in imported(tree) if level or module.split(".")[0] in PACKAGES]
    assert not ours, f"{name} imports {ours}"
