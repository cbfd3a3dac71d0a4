"""Where the CPU went during a bench_api.py run: /proc (Linux) accounting, py-spy summaries.

A snapshot holds the CPU seconds of the server under test, of the database server (its
postmaster and every child of it: backends, WAL writer, checkpointer), of the load generators,
and of the whole machine; the difference of two snapshots says, per request, what each side
spent, and what the rest of the machine (anything else running on the same cores) took.
"""

import asyncio
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

TICK = os.sysconf("SC_CLK_TCK")


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    server: float
    postgres: float | None
    """CPU seconds of the database server so far (None when it cannot be read here)."""
    busy: float
    """CPU seconds of the whole machine outside idle and I/O wait."""


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its closing one.
    return raw[raw.rindex(")") + 2 :].split()


def process_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds of one process (0 when it is gone); with `reaped`, plus those
    of its children that ended and were waited for."""
    fields = _stat(pid)
    if not fields:
        return 0.0
    # After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    return sum(int(v) for v in fields[11 : 15 if reaped else 13]) / TICK


def tree_seconds(root: int) -> float:
    """CPU seconds of `root`, of its live children and of its ended ones.

    PostgreSQL forks every process from the postmaster and reaps them, so a backend or an
    autovacuum worker that ended during the run is counted in the postmaster's cutime.
    """
    total = process_seconds(root, reaped=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == root:
                total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _machine_ticks() -> list[int]:
    """/proc/stat's first line: user, nice, system, idle, iowait, irq, softirq, steal, ..."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def machine_busy_seconds() -> float:
    values = _machine_ticks()
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICK


def machine_steal_seconds() -> float:
    """Time the hypervisor ran something else (counted as busy by `machine_busy_seconds`)."""
    values = _machine_ticks()
    return values[7] / TICK if len(values) > 7 else 0.0


def postmaster_pid(data_directory: str | None) -> int | None:
    """The postmaster's pid from its data folder, when this machine can read it."""
    if not data_directory:
        return None
    try:
        return int(Path(data_directory, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def snapshot(at: float, servers: list[int], postmaster: int | None) -> Snapshot:
    return Snapshot(
        at=at,
        # The API's extra worker processes (`--api-workers`) are its children.
        server=sum(tree_seconds(pid) for pid in servers),
        postgres=tree_seconds(postmaster) if postmaster else None,
        busy=machine_busy_seconds(),
    )


def breakdown(
    before: Snapshot, after: Snapshot, requests: int, generators: float
) -> dict[str, Any]:
    """CPU ms per request of each side, and the share of the machine's cores that was busy.

    `generators` is the CPU seconds the load generators report for themselves.
    """
    per = 1000 / max(1, requests)
    elapsed = max(1e-9, after.at - before.at)
    server = after.server - before.server
    postgres = (
        after.postgres - before.postgres
        if after.postgres is not None and before.postgres is not None
        else None
    )
    busy = after.busy - before.busy
    other = busy - server - generators - (postgres or 0.0)
    cores = os.cpu_count() or 1
    return {
        "server_cpu_ms_per_req": round(server * per, 3),
        "postgres_cpu_ms_per_req": None if postgres is None else round(postgres * per, 3),
        "generator_cpu_ms_per_req": round(generators * per, 3),
        "other_cpu_ms_per_req": round(max(0.0, other) * per, 3),
        "machine_busy": round(busy / (elapsed * cores), 3),
    }


def py_spy() -> str | None:
    """The py-spy executable, if installed (`uv tool install py-spy` puts it in ~/.local/bin)."""
    found = shutil.which("py-spy") or Path.home() / ".local" / "bin" / "py-spy"
    return str(found) if Path(found).exists() else None


def _package(frame: str) -> str:
    if " (" not in frame:
        return "(native or unknown)"
    parts = frame.rsplit(" (", 1)[1].split(":", maxsplit=1)[0].split("/")
    if parts[0] == "metachat" and len(parts) > 1:
        return "metachat." + parts[1].removesuffix(".py")
    return parts[0].removesuffix(".py")


_OUTER = ("(metachat/cli/", "(metachat/__main__", "(metachat/worker/", "(metachat/api/server")


def summarize_profile(raw: str, top: int = 12) -> dict[str, dict[str, float]]:
    """From py-spy's raw output (one `frame;frame;… count` line per stack, root first): the
    share of samples by the package of the innermost frame, and the share of samples under each
    of the platform's own functions.

    SQLAlchemy runs the driver inside greenlets, whose stacks py-spy shows cut off from the
    request's: the package shares are exact, the function shares undercount.
    """
    packages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        total += n
        packages[_package(frames[-1])] += n
        ours = {
            f.split(":")[0] + ")"
            for f in frames
            if "(metachat/" in f and not any(o in f for o in _OUTER)
        }
        for name in ours:
            functions[name] += n

    def shares(counter: Counter[str]) -> dict[str, float]:
        return {k: round(v / max(1, total), 3) for k, v in counter.most_common(top)}

    return {"by_package": shares(packages), "under_function": shares(functions)}


async def start_profile(
    pid: int, seconds: float, out: Path
) -> tuple[asyncio.subprocess.Process, Path]:
    """Start py-spy sampling `pid` for about `seconds` into `out` (its raw format)."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("--profile needs py-spy: uv tool install py-spy")
    command = [spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds) - 1))]
    command += ["-r", "100", "--nonblocking", "-f", "raw", "-o", str(out)]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return proc, out


def _take(out: Path) -> str:
    raw = out.read_text() if out.exists() else ""
    out.unlink(missing_ok=True)
    return raw


async def finish_profile(spy: tuple[asyncio.subprocess.Process, Path]) -> dict[str, Any]:
    """Wait for py-spy, print its summary, return it."""
    await spy[0].wait()
    summary = summarize_profile(_take(spy[1]), top=16)
    print("  py-spy, share of the API process's samples by package of the innermost frame:")
    print("    " + ", ".join(f"{k} {v:.0%}" for k, v in summary["by_package"].items()))
    print("  and under each of the platform's functions (the driver's greenlets cut stacks):")
    for function, share in summary["under_function"].items():
        print(f"    {share:6.1%}  {function}")
    return summary
