"""Turn local copies of UCF-101, HMDB-51, Kinetics-400 and Charades, in their official layouts, into `datasets`
DatasetDicts of (video path, label or labels) with human-readable class names, saved with `save_to_disk`.

    python datasets_scripts/build_dataset.py ucf101 --root /data/UCF101 --split 1 --output data/ucf101
    python datasets_scripts/build_dataset.py hmdb51 --root /data/HMDB51 --split 1 --output data/hmdb51
    python datasets_scripts/build_dataset.py kinetics400 --root /data/kinetics400 --output data/k400
    python datasets_scripts/build_dataset.py charades --root /data/Charades --output data/charades

Videos listed by the annotations but absent from disk are counted and reported (always the case for Kinetics), and
listed in `<output>/missing_<split>.txt`; `--strict` stops instead. The layouts read, the splits and the card are
`modeling_sfar.data.benchmarks`'s (docs/datasets.md).
"""

from __future__ import annotations

import argparse
import logging

from transformers import HfArgumentParser

from modeling_sfar.data.benchmarks import BUILDERS, BuildDatasetArguments, BuildReport, build_benchmark


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default shown, and this docstring's lines kept as written."""


def main(argv: list[str] | None = None) -> BuildReport:
    parser = HfArgumentParser(BuildDatasetArguments, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("benchmark", choices=sorted(BUILDERS), help="The benchmark whose layout --root holds.")
    try:
        args, command = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # a value the arguments refuse, or an unknown flag: a usage error, not a traceback
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    report = build_benchmark(command.benchmark, args)
    print(f"{command.benchmark}: {report.summary()} -> {args.output}")
    return report


if __name__ == "__main__":
    main()
