#!/usr/bin/env python3
"""Medians of critest's lifecycle benchmarks per handler: cri-bench.py DIR
(DIR/HANDLER-ROUND/{pod,container}_benchmark_data.json, as scripts/cri.sh bench writes)."""
import glob, json, os, statistics, sys

root = sys.argv[1]
data = {}
for path in sorted(glob.glob(os.path.join(root, "*", "*_benchmark_data.json"))):
    handler = os.path.basename(os.path.dirname(path)).rsplit("-", 1)[0]
    kind = os.path.basename(path).split("_")[0]
    d = json.load(open(path))
    names = d["operationsNames"] + ["lifecycle"]
    for p in d["datapoints"]:
        ops = p["operationsDurationsNs"] + [sum(p["operationsDurationsNs"])]
        for n, v in zip(names, ops):
            data.setdefault(kind, {}).setdefault(n, {}).setdefault(handler, []).append(v / 1e6)
print("| benchmark | operation | runc (ms, median) | oci-runc (ms, median) | oci / runc | samples |")
print("|---|---|---|---|---|---|")
for kind in ("pod", "container"):
    for op, by in data.get(kind, {}).items():
        r, o = statistics.median(by["runc"]), statistics.median(by["oci"])
        print(f"| {kind} | {op} | {r:.1f} | {o:.1f} | {o / r:.2f} | {len(by['oci'])} |")
