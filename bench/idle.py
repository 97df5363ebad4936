"""What idle ``make run`` costs: CPU seconds per minute of each of its processes while nothing happens.

Starts ``python -m devstack`` as ``make run`` does (embedded Redis and SQLite, free ports), waits
until it serves and has settled, reads every process's user + system CPU time from /proc over the
window, then stops the stack as Ctrl-C does and checks that none of its processes is left.

    .venv/bin/python -m bench.idle [--settle 30] [--seconds 180] [--write]

``--write`` replaces the table of the "Idle `make run`" section of docs/BENCHMARKS.md (its prose stays).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.harness import ROOT, free_port, parent_pids, proc_stat, process_cpu_seconds, wait_http, write_table

HEADING = "## Idle `make run`"
BUDGET_SHARE = 0.02  # of one core, every process together
# (marker in the NUL-separated command line, name, name of its children that have the same marker).
ROLES = (
    (b"-m\0devstack\0", "launcher (`python -m devstack`)", ""),
    (b"valkey-server", "embedded Redis", ""),
    (b"gunicorn", "web: gunicorn master", "web: gunicorn workers"),
    (b"\0worker\0", "Celery worker: main process", "Celery worker: pool processes"),
    (b"\0beat\0", "Celery beat", ""),
    (b"\0flower\0", "Flower", ""),
)


def _role(pid: int) -> int:
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    return next((i for i, (marker, _, _) in enumerate(ROLES) if marker in command), len(ROLES))


def _tree(root: int) -> dict[int, tuple[int, bool]]:
    """Every live process under ``root`` (itself included): its role and whether its parent has the same one."""
    parents = parent_pids()
    roles: dict[int, tuple[int, bool]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            role = _role(pid)
        except OSError:
            continue
        parent = roles.get(parents.get(pid, 0))
        roles[pid] = (role, parent is not None and parent[0] == role and bool(_children_name(role)))
        todo += [child for child, ppid in parents.items() if ppid == pid]
    return roles


def _children_name(role: int) -> str:
    return ROLES[role][2] if role < len(ROLES) else ""


def _name(role: int, child: bool) -> str:
    if role == len(ROLES):
        return "other"
    return _children_name(role) if child else ROLES[role][1]


def measure(settle: float, seconds: float) -> tuple[list[tuple[str, int, float]], list[int]]:
    """Per role: (name, process count, CPU seconds per minute); and the pids left after the stop."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    port = free_port()
    env.update(PORT=str(port), EMBEDDED_REDIS_PORT=str(free_port()), FLOWER_PORT=str(free_port()))
    log_path = Path(tempfile.gettempdir()) / f"bench-idle-{port}.log"
    with open(log_path, "wb") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    roles: dict[int, tuple[int, bool]] = {}
    used: dict[tuple[int, bool], float] = defaultdict(float)
    count: dict[tuple[int, bool], int] = defaultdict(int)
    try:
        wait_http(f"http://127.0.0.1:{port}/marketplace/test", launcher, timeout=120)
        print(f"serving; settling {settle:.0f} s (log: {log_path})", flush=True)
        time.sleep(settle)
        roles = _tree(launcher.pid)
        before = {pid: process_cpu_seconds(pid) for pid in roles}
        started = time.monotonic()
        print(f"measuring {len(roles)} processes for {seconds:.0f} s", flush=True)
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        for pid, key in roles.items():
            used[key] += process_cpu_seconds(pid) - before[pid]
            count[key] += 1
    finally:
        # What Ctrl-C in the terminal does: the launcher stops every process it started.
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
    left = [pid for pid in roles if _state(pid) not in ("gone", "Z")]
    return [(_name(*key), count[key], used[key] * 60 / elapsed) for key in sorted(used)], left


def _state(pid: int) -> str:
    try:
        return proc_stat(pid)[0]
    except OSError:
        return "gone"


def main() -> int:
    """Measure, print a Markdown table and say whether the stack met its budget."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settle", type=float, default=30, help="seconds between serving and measuring")
    parser.add_argument("--seconds", type=float, default=180, help="length of the measured window")
    parser.add_argument("--write", action="store_true", help="record the table in docs/BENCHMARKS.md")
    args = parser.parse_args()
    rows, left = measure(args.settle, args.seconds)
    total = sum(per_minute for _, _, per_minute in rows)
    lines = ["| process | processes | CPU s per minute | share of one core |", "|---|---|---|---|"]
    lines += [f"| {name} | {n} | {per_minute:.2f} | {per_minute / 60:.2%} |" for name, n, per_minute in rows]
    lines.append(f"| **all together** | {sum(n for _, n, _ in rows)} | **{total:.2f}** | **{total / 60:.2%}** |")
    table = "\n".join(lines)
    print("\n" + table + f"\n\nload average during the run: {os.getloadavg()[0]:.1f}; "
          f"left running after the stop: {left or 'none'}")
    if args.write:
        write_table(HEADING, table)
    return 0 if total / 60 < BUDGET_SHARE and not left else 1


if __name__ == "__main__":
    raise SystemExit(main())
