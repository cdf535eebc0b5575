#!/usr/bin/env python3
"""Where a webhook review's CPU goes, from `perf report --children --sort sym -g none --stdio`
on stdin (inclusive shares of the sampled process, call graphs unwound with dwarf).

Each part is either a function and everything it calls (inclusive: a syscall wrapper takes the
kernel work it causes, which on loopback includes delivering a sent segment to the peer's
socket) or the sum of the self time of a family of functions (crypto, HTTP), chosen so that
no two parts count the same sample. The shares become µs with the unprofiled median CPU per
review of the same shape from deployed.sh's results (perf's own cost is charged to the
process it samples, so the profiled run's CPU per review is higher). Prints a Markdown table.
"""
import argparse
import json
import re
import sys

# (part, how: "incl" symbol regex | "self" symbol regex)
PARTS = [
    ("parsing the AdmissionReview (`review::parse_pod`, serde_json)", "incl", r"^agentgov_webhook::review::parse_pod$"),
    ("deciding (`decide::pod::decide_pod`: cache, seven checks, Pod Security)", "incl", r"^agentgov_webhook::decide::pod::decide_pod$"),
    ("the decision log line and counters (`decision_log::record`)", "incl", r"^agentgov_webhook::decision_log::record$"),
    ("the log's write to the pipe (`write`, batched)", "incl", r"^__GI___libc_write$"),
    ("encoding the answer (`server::json`: `Answer` serialized, the response built)", "incl", r"^agentgov_webhook::server::json$"),
    ("sending the response (`writev`: TCP, and on loopback the peer's receive path)", "incl", r"^__GI___writev$"),
    ("receiving the request (`recv`)", "incl", r"^__libc_recv$"),
    ("waiting for the next request (`epoll_wait`, sleeping and waking)", "incl", r"^epoll_wait$"),
    ("TLS record crypto (AES-GCM, self time)", "self", r"aes_gcm|gcm_|ghash|^ring_core"),
    ("HTTP framing (hyper, h2, httparse, http; self time)", "self", r"^<?(hyper|h2|httparse|http|hyper_util)::|<(hyper|h2|http)::"),
    ("allocation (jemalloc, and glibc's malloc in a build without it; self time)", "self", r"^(_rjem_|__rust_(alloc|dealloc|realloc)|tikv_jemallocator::)|^(malloc|_int_malloc|_int_free|cfree@GLIBC_2\.2\.5|__GI___libc_free|free|realloc|_int_realloc|__libc_malloc|malloc_consolidate)$"),
]

LINE = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[[^\]]*\]\s+(.*?)\s*$")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True, help="deployed.sh's load.jsonl")
    ap.add_argument("--shape", required=True, help="'HTTP CONNECTIONS IN_FLIGHT'")
    ap.add_argument("--profiled", required=True, help="the profiled load's JSON line")
    args = ap.parse_args()
    http, connections, in_flight = args.shape.split()

    rows = []
    for line in sys.stdin:
        m = LINE.match(line)
        if m:
            rows.append((float(m.group(1)), float(m.group(2)), m.group(3)))
    if not rows:
        sys.exit("profile.py: no samples in perf's report")

    cpus = []
    for line in open(args.results):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if (r["target"], str(r["http"]), str(r["connections"]), str(r["in_flight"])) == (
            "release", http, connections, in_flight,
        ) and r.get("target_cpu_us_per_review") is not None:
            cpus.append(r["target_cpu_us_per_review"])
    if not cpus:
        sys.exit(f"profile.py: no unprofiled release rows for shape {args.shape}")
    cpus.sort()
    cpu = cpus[(len(cpus) - 1) // 2]
    profiled = json.loads(args.profiled)

    shares = []
    for name, how, pattern in PARTS:
        rx = re.compile(pattern)
        if how == "incl":
            found = [c for c, _, sym in rows if rx.search(sym)]
            # A part whose frame is missing (inlined, renamed) would read 0 %: refuse instead.
            if not found:
                sys.exit(f"profile.py: no frame matches {pattern!r} ({name}); was it inlined or renamed?")
            share = max(found)
        else:
            share = sum(s for _, s, sym in rows if rx.search(sym))
        shares.append((name, share))
    rest = max(0.0, 100.0 - sum(s for _, s in shares))
    shares.append(("everything else (tokio's scheduler, rustls' state machine, memcpy, the kernel's scheduling, ...)", rest))

    print(
        f"HTTP/{http}, {connections} connection(s), {in_flight} in flight each: "
        f"{cpu:.1f} µs of CPU per review unprofiled (median of {len(cpus)} rounds), "
        f"{profiled['target_cpu_us_per_review']:.1f} µs while perf sampled it."
    )
    print()
    print("| part of a review | share of the webhook's CPU | µs per review |")
    print("|---|---|---|")
    for name, share in shares:
        print(f"| {name} | {share:.1f} % | {share * cpu / 100:.1f} |")


if __name__ == "__main__":
    main()
