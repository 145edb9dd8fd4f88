"""What a user runs with `trust_remote_code=True` and what we read and write: the shipped files import only the
standard library, torch and transformers (and numpy, which transformers itself requires) at module level, and touch
neither the network nor the file system when imported; weights are read and written as safetensors only."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from modeling_sfar.remote_code.modeling_alt import SHIPPED_FILES as ALT_SHIPPED_FILES
from modeling_sfar.remote_code.modeling_sfar import SHIPPED_FILES

REPO = Path(__file__).resolve().parents[2]
SHIPPED_DIR = REPO / "modeling_sfar" / "remote_code"
# the folder ships two models, SFAR and ALT (which shares SFAR's processor files): exactly the union of their files
SHIPPED = sorted(set(SHIPPED_FILES) | set(ALT_SHIPPED_FILES))
# huggingface_hub: a dependency of transformers, whose 5.19 configs take `@strict` from `huggingface_hub.dataclasses`
ALLOWED = {"torch", "transformers", "numpy", "huggingface_hub"}


def module_level_imports(path: Path) -> set[str]:
    """Top-level packages imported outside functions and classes' methods (relative imports excluded)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_shipped_folder_holds_exactly_the_shipped_files():
    """What a user audits before `trust_remote_code=True` is one folder with nothing else in it."""
    present = sorted(path.name for path in SHIPPED_DIR.iterdir() if path.name != "__pycache__")
    assert present == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_import_only_torch_and_transformers_at_module_level(name):
    imports = module_level_imports(SHIPPED_DIR / name)
    foreign = {m for m in imports if m not in sys.stdlib_module_names and m != "__future__"} - ALLOWED
    assert not foreign, f"{name} imports {sorted(foreign)} at module level"


IMPORT_WATCH = textwrap.dedent(
    """
    import importlib, json, sys

    # what the shipped files import, loaded before watching (their own import-time work is not ours)
    import numpy, torch, transformers
    for module in ("transformers.modeling_utils", "transformers.models.clip.modeling_clip",
                   "transformers.processing_utils", "transformers.video_processing_utils", "transformers.video_utils",
                   "transformers.image_utils", "transformers.feature_extraction_utils", "transformers.initialization",
                   "transformers.pipelines", "transformers.pipelines.pt_utils", "torch.utils.data"):
        importlib.import_module(module)

    events = []
    WATCHED = ("socket.", "urllib.", "http.", "subprocess.", "os.system", "os.remove", "os.rename", "os.mkdir",
               "os.rmdir", "shutil.", "os.listdir", "os.scandir")

    def hook(event, args):
        if event == "open":
            path = str(args[0])
            if not path.endswith((".py", ".pyc", ".so")) and "__pycache__" not in path:
                events.append([event, path])
        elif event.startswith(WATCHED):
            events.append([event, repr(args)[:200]])

    sys.path.insert(0, sys.argv[1])
    sys.addaudithook(hook)
    for name in sys.argv[2:]:
        importlib.import_module("shipped." + name)
    watched = list(events)
    print(json.dumps(watched))
    """
)


def test_importing_the_shipped_files_touches_no_network_or_file(tmp_path):
    package = tmp_path / "shipped"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in SHIPPED:
        shutil.copy(SHIPPED_DIR / name, package / name)
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_WATCH, str(tmp_path), *(Path(name).stem for name in SHIPPED)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    events = json.loads(run.stdout.strip().splitlines()[-1])
    # the import system lists the package folder to find the modules; nothing else may happen
    events = [e for e in events if not (e[0] in ("os.listdir", "os.scandir") and str(tmp_path) in e[1])]
    assert events == [], events


def test_only_safetensors_weights_are_read(converted, tmp_path):
    """A folder with pickled weights only is refused by the evaluation script and the Space, naming the problem."""
    model, processor = converted
    folder = tmp_path / "pickled"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "eval.py"), "--model", str(folder), "--dataset", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0 and "model.safetensors" in run.stderr
    sys.path.insert(0, str(REPO / "space"))
    try:
        import app

        with pytest.raises(OSError, match="model.safetensors"):
            app.Classifier(str(folder))
    finally:
        sys.path.remove(str(REPO / "space"))


def test_saving_writes_safetensors_and_no_pickle(converted, tmp_path):
    model, _ = converted
    model.save_pretrained(tmp_path / "saved")
    written = {p.name for p in (tmp_path / "saved").iterdir()}
    assert "model.safetensors" in written
    assert not [n for n in written if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
