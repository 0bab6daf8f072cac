"""Load check of the local hub: concurrent clients pushing and pulling through huggingface_hub, on loopback only.

Each client is its own process with its own repository. For a bounded time it commits files (alternately a small text
file, sent regular, and a 1 MiB binary file, sent through the LFS batch API) and downloads each one back at the commit
it made, comparing the bytes with what it pushed. The server runs in this process and times every request. Prints
requests per second, latency percentiles, the slowest request and the equality check; writes
`benchmarks/results/hub.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results" / "hub.json"
LFS_SIZE = 1 << 20
TEXT_SIZE = 4096


def client(index: int, url: str, deadline: float, workdir: str, queue) -> None:
    """One client: push and pull until `deadline`; report counts and mismatches on `queue`."""
    import random

    from huggingface_hub import HfApi, hf_hub_download

    rng = random.Random(index)
    api = HfApi(endpoint=url)
    repo_id = f"bench/client-{index}"
    api.create_repo(repo_id, exist_ok=True)
    pushed = pulled = mismatches = bytes_moved = 0
    errors: list[str] = []
    number = 0
    while time.time() < deadline:
        if number % 2:
            path, content = f"weights/part-{number % 4}.bin", rng.randbytes(LFS_SIZE)
        else:
            path = f"notes/note-{number % 4}.txt"
            content = "".join(rng.choice("abcdefghij \n") for _ in range(TEXT_SIZE)).encode()
        number += 1
        try:
            commit = api.upload_file(repo_id=repo_id, path_or_fileobj=content, path_in_repo=path,
                                     commit_message=f"push {number}")
            pushed += 1
            local = hf_hub_download(repo_id, path, revision=commit.oid, endpoint=url,
                                    cache_dir=os.path.join(workdir, f"cache-{index}"))
            pulled += 1
            bytes_moved += 2 * len(content)
            if Path(local).read_bytes() != content:
                mismatches += 1
        except Exception as error:  # noqa: BLE001 - reported in the results
            errors.append(f"{type(error).__name__}: {error}"[:300])
    queue.put({"client": index, "pushed": pushed, "pulled": pulled, "mismatches": mismatches,
               "bytes": bytes_moved, "errors": errors})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hub", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients push and pull (60)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes (8)")
    parser.add_argument("--quick", action="store_true", help="10 seconds")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    seconds = 10.0 if args.quick else args.seconds
    if seconds <= 0 or args.clients <= 0:
        parser.error("--seconds and --clients must be positive")

    from effhub.hub.server import LocalHubServer

    with tempfile.TemporaryDirectory(prefix="effhub-hub-bench-") as workdir:
        os.environ.update(HF_HOME=os.path.join(workdir, "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1",
                          HF_HUB_DISABLE_TELEMETRY="1")
        # loopback only; the server sets HF_HUB_DISABLE_XET=1 here, which the client processes inherit
        with LocalHubServer(os.path.join(workdir, "root"), host="127.0.0.1") as hub:
            context = multiprocessing.get_context("spawn")
            queue = context.Queue()
            warmup = 15.0  # the clients' imports, before the clock starts
            start = time.time() + warmup
            processes = [context.Process(target=client, args=(i, hub.url, start + seconds, workdir, queue))
                         for i in range(args.clients)]
            for process in processes:
                process.start()
            reports = [queue.get(timeout=warmup + seconds + 300) for _ in processes]
            for process in processes:
                process.join(timeout=60)
            elapsed = time.time() - start
            times = [entry for entry in hub.request_times()]
    durations = sorted(entry[0] for entry in times)
    slowest = max(times, key=lambda entry: entry[0]) if times else (0.0, "", "", 0)
    requests = len(times)
    pushed = sum(r["pushed"] for r in reports)
    mismatches = sum(r["mismatches"] for r in reports)
    errors = [e for r in reports for e in r["errors"]]
    statuses: dict[str, int] = {}
    for entry in times:
        statuses[str(entry[3])] = statuses.get(str(entry[3]), 0) + 1
    result = {
        "benchmark": "hub",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "clients": args.clients, "seconds": seconds, "elapsed_s": round(elapsed, 1),
        "requests": requests, "requests_per_s": round(requests / max(elapsed, 1e-9), 1),
        "latency_s": {"p50": round(statistics.median(durations), 4) if durations else None,
                      "p95": round(durations[int(0.95 * (len(durations) - 1))], 4) if durations else None,
                      "max": round(slowest[0], 4)},
        "slowest_request": {"seconds": round(slowest[0], 4), "method": slowest[1], "path": slowest[2],
                            "status": slowest[3]},
        "http_statuses": statuses,
        "files_pushed": pushed, "files_pulled": sum(r["pulled"] for r in reports),
        "megabytes_moved": round(sum(r["bytes"] for r in reports) / 1e6, 1),
        "mismatches": mismatches, "client_errors": errors[:10], "client_error_count": len(errors),
        "all_downloads_equal_pushed": mismatches == 0 and not errors and pushed > 0,
    }
    print(f"{'clients':<28}{args.clients}\n{'seconds':<28}{seconds:g}\n{'requests':<28}{requests}\n"
          f"{'requests/s':<28}{result['requests_per_s']}\n"
          f"{'latency p50 / p95 (s)':<28}{result['latency_s']['p50']} / {result['latency_s']['p95']}\n"
          f"{'slowest request':<28}{slowest[0]:.3f} s  {slowest[1]} {slowest[2]}\n"
          f"{'files pushed / pulled':<28}{pushed} / {result['files_pulled']}\n"
          f"{'downloads equal pushes':<28}{result['all_downloads_equal_pushed']} ({mismatches} mismatches, "
          f"{len(errors)} client errors)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0 if result["all_downloads_equal_pushed"] else 1


if __name__ == "__main__":
    sys.exit(main())
