"""`python -m benchmarks [--quick] [name ...]`: run every benchmark (or the named ones) in turn."""

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    root = Path(__file__).parent
    return sorted(info.name for info in pkgutil.iter_modules([str(root)])
                  if info.ispkg and (root / info.name / "run.py").is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(available())})")
    parser.add_argument("--quick", action="store_true", help="demo-sized runs")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    status = 0
    for name in args.names or available():
        print(f"== benchmark {name}{' (quick)' if args.quick else ''}")
        module = importlib.import_module(f"benchmarks.{name}.run")
        status |= int(module.main(["--quick"] if args.quick else []) or 0)
    if not available():
        print("no benchmarks yet")
    return status


if __name__ == "__main__":
    sys.exit(main())
