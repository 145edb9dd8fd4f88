"""What every benchmark shares: interleaved repeats with medians, and a JSON + Markdown report.

A benchmark's figures are ratios against a baseline measured in the same run: the cases are timed in turn, repeat
after repeat, so that a slow spell of the machine falls on all of them alike, and a ratio is the median of the
per-round ratios (`paired_ratio`; model_speed.py), so that a drift between rounds cancels too. The order of the
cases rotates from round to round, so that no case always follows the same one (whatever the one before leaves
behind, in caches or in the allocator, falls on every case alike), and `ratio_spread` gives the smallest, median
and largest per-round ratio: how far a single round can be trusted.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def interleaved(cases: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """
    Time every case `warmup + repeats` times, in turn, the order rotated by one case each round (round r starts
    with case r mod K); returns each case's median and all its kept times (s), in round order.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            cases[name]()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return {name: {"median_s": statistics.median(t), "times_s": t} for name, t in times.items()}


def round_ratios(times: dict[str, dict[str, Any]], case: str, base: str) -> list[float]:
    """`case`'s time over `base`'s time in the same round, for every round (from `interleaved`)."""
    return [a / b for a, b in zip(times[case]["times_s"], times[base]["times_s"], strict=True)]


def paired_ratio(times: dict[str, dict[str, Any]], case: str, base: str) -> float:
    """The median over rounds of `case`'s time over `base`'s time in the same round (from `interleaved`)."""
    return statistics.median(round_ratios(times, case, base))


def ratio_spread(times: dict[str, dict[str, Any]], case: str, base: str) -> str:
    """The per-round ratios of `case` over `base` as "min / median / max" (3 decimals), for a report."""
    ratios = round_ratios(times, case, base)
    return f"{min(ratios):.3f} / {statistics.median(ratios):.3f} / {max(ratios):.3f}"


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine of a report: versions, the CPU with the matrix features that bound its speed, threads, cores."""
    import torch

    from modeling_sfar.remote_code.cpu_kernels import cpu_features

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector ISA torch's kernels dispatch to
        "cpu_features": ", ".join(name for name, present in cpu_features().items() if present) or "none known",
        "cpu_threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_report(
    output_dir: str | os.PathLike, name: str, title: str, rows: list[dict[str, Any]], notes: str = ""
) -> Path:
    """Write `name.json` (rows, machine) and `name.md` (a table of the rows, then the notes); returns the .md path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {"title": title, "machine": machine(), "rows": rows, "notes": notes}
    (output_dir / f"{name}.json").write_text(json.dumps(report, indent=2))

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = [f"# {title}", ""]
    sections = list(dict.fromkeys(row.get("section", "") for row in rows))
    for section in sections:  # one table per section, with that section's columns
        part = [{k: v for k, v in row.items() if k != "section"} for row in rows if row.get("section", "") == section]
        columns = list(dict.fromkeys(key for row in part for key in row))
        if section:
            lines += [f"## {section}", ""]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in part]
        lines.append("")
    lines += [f"Machine: {report['machine']}", "", notes]
    path = output_dir / f"{name}.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
