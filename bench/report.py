#!/usr/bin/env python3
"""Turns the loadgen output lines collected by bench/run.sh into BENCHMARKS.md."""
import os
import platform
import subprocess
import sys

REFERENCE = {  # django-rest-passwordreset 1.6, Django 5.2, gunicorn 5 sync workers, SQLite, 16 conns
    "validate": 1100,
    "validate-unknown": 900,
    "request-known": 310,
    "request-unknown": 480,
    "confirm": 3.7,
}


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return "?"


rows, diffs, events, floods = [], [], [], []
revision = None
for line in open(sys.argv[1]):
    if line.startswith("REV "):
        revision = line.split()[1]
        continue
    parts = [p.strip() for p in line.strip().strip("|").split("|")]
    kind = line.split(" ", 1)[0]
    if kind == "ROW":
        _, label, case, conc, rate, p50, p90, p99, p999, errors = parts
        rows.append(dict(db=label, case=case, conc=int(conc), rate=float(rate), p50=p50, p90=p90, p99=p99, p999=p999, errors=errors))
    elif kind == "DIFF":
        diffs.append(parts[1:])
    elif kind == "EVENTS":
        events.append(parts[1:])
    elif kind == "FLOOD":
        floods.append(parts[1:])


def rate(db, case, conc):
    for r in rows:
        if r["db"] == db and r["case"] == case and r["conc"] == conc:
            return r["rate"]
    return None


out = []
w = out.append
w("# Benchmarks\n")
w("Produced by `bench/run.sh` (re-run it to refresh this file). Figures are from one run on one machine;")
w("compare the ratios, not the absolute numbers.\n")
w("## Method\n")
w("- Release build of `pwreset serve` with production defaults except: per-IP limits, the per-account cap and the")
w("  VerifyPassword guard off, and `--allow-reset-without-password` (so Confirm tokens can be seeded without hashing).")
w("  argon2id at the default m=19456 KiB, t=2, p=1, one hashing thread per core.")
w("- `examples/loadgen.rs` (tonic client, HdrHistogram) on the same machine, closed loop at a fixed concurrency over")
w("  one HTTP/2 connection, 1 s warm-up, then a fixed measuring time. It seeds its own accounts and harvests tokens")
w("  from the event stream as a notifier would. Only 127.0.0.1 is targeted.")
w("- `validate` cycles through the live tokens of 64 seeded accounts, so with the token cache (default")
w("  `--token-cache-ttl` 10 s) it measures the cached path, as repeated validations of live tokens take in")
w("  production; `validate-unknown` cycles through 1,024 unknown tokens, which are never cached and always read")
w("  the database. RequestToken runs with the default `--reset-queue-wait` (100 ms).")
w("- RequestToken answers only once its batch has committed (an OK is durable) and never sooner than")
w("  `--reset-answer-floor` (3 ms) after the request arrived, for known and unknown addresses alike.")
w("- SQLite: a file in WAL mode with `synchronous=FULL` (sqlx's default): every commit is durable on return.")
w("  PostgreSQL: the local server, default `synchronous_commit=on`.")
w("- Latencies in ms; errors are counted by gRPC status.\n")
w("## Machine and versions\n")
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
memory = sh("free -g | awk '/Mem:/ {print $2}'")
pg_server = sh("psql postgres://postgres@127.0.0.1:5432/test -Atc 'show server_version'")
w(f"- CPU: {sh('nproc')} cores, {cpu}")
w(f"- Memory: {memory} GiB; kernel {platform.release()}")
w(f"- {sh('rustc --version')}; pwreset {revision or sh('git rev-parse --short HEAD')}")
w(f"- {sh('psql --version')} (server: {pg_server})\n")

for db in ["sqlite", "postgres"]:
    w(f"## {db}\n")
    w("| case | conc | req/s | p50 | p90 | p99 | p999 | errors |")
    w("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["db"] == db and not r["case"].startswith("argon2-bound"):
            w(f"| {r['case']} | {r['conc']} | {r['rate']:.0f} | {r['p50']} | {r['p90']} | {r['p99']} | {r['p999']} | {r['errors']} |")
    w("")

w("## Enumeration timing (16 concurrent callers, alternating)\n")
w("| db | case | p50 (first vs second) | p99 | mean |")
w("|---|---|---|---|---|")
for d in diffs:
    w(f"| {d[0]} | {d[1]} | {d[2]} | {d[3]} | {d[4]} |")
w("")
w("## Event delivery (commit to subscriber)\n")
w("Measured from the event's `occurred_at` (taken just before its transaction) to its arrival at each subscriber,")
w("while a driver issues RequestToken at concurrency 4.\n")
w("| db | subscribers | deliveries | p50 | p90 | p99 | p999 | max |")
w("|---|---|---|---|---|---|---|---|")
for e in events:
    w("| " + " | ".join(e) + " |")
w("")
w("## argon2 and memory\n")
w("| case | conc | hashes/s | p50 | p99 |")
w("|---|---|---|---|---|")
for r in rows:
    if r["case"].startswith("argon2-bound"):
        when = "" if r["db"] == "none" else f", before the {r['db']} calls"
        w(f"| {r['case']}{when} | {r['conc']} | {r['rate']:.1f} | {r['p50']} | {r['p99']} |")
w("")
for f in floods:
    w(f"- Flood ({f[0]}): {f[1]}: outcomes {f[2]}; {f[3]}; {f[4]}; took {f[5]}.")
w("")

w("## Targets\n")
w("| target | measured | met |")
w("|---|---|---|")
bound = max([r["rate"] for r in rows if r["case"].startswith("argon2-bound")] or [0])


def target(name, value, ok):
    w(f"| {name} | {value} | {'yes' if ok else '**no**'} |")


for db in ["sqlite", "postgres"]:
    for conc in [16, 64]:
        v, h = rate(db, "validate", conc), rate(db, "health", conc)
        if v and h:
            target(f"{db}: ValidateToken ≥ 0.5× health Check (c={conc})", f"{v:.0f} / {h:.0f} = {v / h:.2f}×", v / h >= 0.5)
    v = rate(db, "validate", 16)
    if v:
        target(f"{db}: ValidateToken ≥ 20× reference (c=16)", f"{v:.0f} / {REFERENCE['validate']} = {v / REFERENCE['validate']:.1f}×", v >= 20 * REFERENCE["validate"])
    for case in ["request-known", "request-unknown"]:
        v = rate(db, case, 16)
        if v:
            ref = REFERENCE[case]
            target(f"{db}: RequestToken {case.split('-')[1]} ≥ 10× reference (c=16)", f"{v:.0f} / {ref} = {v / ref:.1f}×", v >= 10 * ref)
    for case in ["confirm", "verify"]:
        for conc in [16, 64]:
            v = rate(db, case, conc)
            # The bound measured just before these calls, else the run's best.
            b = rate(db, "argon2-bound(no RPC)", conc) or bound
            if v and b:
                target(f"{db}: {case} ≥ 0.9× argon2 bound (c={conc})", f"{v:.1f} / {b:.1f} = {v / b:.2f}×", v / b >= 0.9)
for e in events:
    p99 = float(e[5].split()[1])
    limit = 1000 if "replica" in e[1] else 50
    target(f"{e[0]}: event delivery p99 < {limit} ms ({e[1]})", f"{p99} ms", p99 < limit)
for f in floods:
    peak = float(f[4].split()[2])
    target("peak RSS under 1000 concurrent Confirm ≤ permits × m + 64 MiB = 2 × 19 + 64 = 102 MiB", f"{peak} MiB", peak <= 102)
unknown = [(db, rate(db, "validate-unknown", 16)) for db in ["sqlite", "postgres"]]
if any(v for _, v in unknown):
    w("")
    w("Not a target, for comparison: ValidateToken with an unknown token, which is never cached and always reads")
    w("the database: " + "; ".join(
        f"{db} {v:.0f}/s = {v / REFERENCE['validate-unknown']:.1f}× the reference's {REFERENCE['validate-unknown']}/s"
        for db, v in unknown if v) + " (c=16).")
analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ANALYSIS.md")
if os.path.exists(analysis):
    w("")
    w(open(analysis).read())
print("\n".join(out))
