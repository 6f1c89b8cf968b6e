"""Run every benchmark (``make bench``), or the ones named: ``python -m bench auth ingest``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    available = sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )
    wanted = [a for a in argv if not a.startswith("-")] or available
    flags = [a for a in argv if a.startswith("-")]
    status = 0
    for name in wanted:
        if name not in available:
            print(f"unknown benchmark {name}; available: {', '.join(available)}")
            return 2
        print(f"\n=== bench {name} ===", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        status |= int(module.main(flags))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
