#!/usr/bin/env python3
"""offcpu-summary.py — summarise a `perf record -e sched:sched_switch --call-graph dwarf`
profile (bench/backup-latency.sh PERF=sched): how often vmad's threads left the CPU, and
where, grouped by thread kind, prev_state (S: blocked, R: preempted, D: waiting for I/O)
and the innermost user-space frames.

    bench/offcpu-summary.py perf-warm.data [--top 20] [--frames 4] [--grep cbw]

Threads without a name in the profile (perf attached after they started) are shown as
"nbd" when their stack contains an NBD worker frame, else "?".
"""

import argparse
import collections
import re
import subprocess
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--grep", help="only stacks with a frame containing this text")
    a = p.parse_args()

    out = subprocess.run(["perf", "script", "-i", a.data], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("perf script failed: " + out.stderr.strip())

    stacks = collections.Counter()
    threads = collections.Counter()
    comm = state = None
    frames = []

    def flush():
        if comm is None:
            return
        user = [f for f in frames if "[kernel" not in f[1] and f[0] != "[unknown]"]
        kern = [f for f in frames if "[kernel" in f[1]]
        name = comm
        if name.startswith(":"):
            name = "nbd" if any("worker_main" in f[0] or "nbd_" in f[0] for f in user) else "?"
        syms = [f[0] for f in user]
        if a.grep and not any(a.grep in s for s in syms):
            return
        threads[name] += 1
        # the first kernel frame that says why: past the scheduler's own frames
        skip = ("__schedule", "schedule", "__traceiter", "__probestub", "perf_")
        why = next((f[0] for f in kern if not f[0].startswith(skip)), "-")
        stacks[(name, state, why, tuple(syms[:a.frames]))] += 1

    for line in out.stdout.splitlines():
        if not line.strip():
            flush()
            comm, frames = None, []
            continue
        if "sched:sched_switch" in line:
            comm = line.split()[0]
            m = re.search(r"prev_state=(\S+)", line)
            state = m.group(1) if m else "?"
            continue
        parts = line.strip().split(None, 2)
        if comm is not None and len(parts) >= 2:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", parts[1])
            frames.append((sym, parts[2] if len(parts) > 2 else ""))
    flush()

    print("context switches per thread kind:", dict(threads.most_common()))
    print()
    print("count  thread  state  kernel  user frames (innermost first)")
    for (name, st, why, syms), n in stacks.most_common(a.top):
        print("%6d  %-10s %-3s %-26s %s" % (n, name, st, why, " < ".join(syms)))


if __name__ == "__main__":
    main()
