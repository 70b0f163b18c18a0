#!/usr/bin/env python3
"""Idle-host scrape cost of one or more exporter binaries, interleaved.

    python3 benches/idle_scrape.py [--rounds N] [--scrapes N] BINARY... [-- FLAG...]

Starts each BINARY in turn on a free loopback port (with the FLAGs after
`--`, e.g. `--collector.netns=host`), scrapes /metrics 20 times to warm up,
then SCRAPES times, and prints the p50/p90 of the HTTP round trip and of the
exporter's own unassigned_port_collection_duration_seconds. Binaries take
turns for ROUNDS rounds, so a busy machine's noise falls on all of them
alike; the last lines are the medians of the per-round p50s. Figures, not
assertions. Used to check that a change keeps an idle host's scrape cost
(e.g. `cp target/release/unassigned_port_exporter /tmp/before` on main,
then `python3 benches/idle_scrape.py /tmp/before target/release/unassigned_port_exporter`).
"""

import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quantile(values, fraction):
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1))] * 1e3


def measure(binary, flags, scrapes):
    port = free_port()
    child = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", *flags],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url).read()
                break
            except OSError:
                time.sleep(0.05)
        for _ in range(20):
            urllib.request.urlopen(url).read()
        http, collection = [], []
        for _ in range(scrapes):
            started = time.perf_counter()
            body = urllib.request.urlopen(url).read().decode()
            http.append(time.perf_counter() - started)
            for line in body.splitlines():
                if line.startswith("unassigned_port_collection_duration_seconds "):
                    collection.append(float(line.split()[1]))
        series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
        return quantile(http, 0.5), quantile(http, 0.9), quantile(collection, 0.5), quantile(collection, 0.9), series
    finally:
        child.kill()
        child.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=1000)
    parser.add_argument("binaries", nargs="+")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, flags = parser.parse_args(argv[:cut]), argv[cut + 1 :]
    p50s = {binary: ([], []) for binary in args.binaries}
    for _ in range(args.rounds):
        for binary in args.binaries:
            http50, http90, coll50, coll90, series = measure(binary, flags, args.scrapes)
            p50s[binary][0].append(http50)
            p50s[binary][1].append(coll50)
            print(f"{binary}: http p50 {http50:.3f} ms p90 {http90:.3f} ms | collection p50 {coll50:.3f} ms p90 {coll90:.3f} ms | {series} series")
    for binary, (http, collection) in p50s.items():
        print(f"median of {args.rounds} rounds: {binary}: http p50 {statistics.median(http):.3f} ms, collection p50 {statistics.median(collection):.3f} ms")


if __name__ == "__main__":
    main()
