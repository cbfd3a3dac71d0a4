"""Counting a server process's instructions with callgrind, for the *_instructions benchmarks.

The process runs under `valgrind --tool=callgrind` with counting off (`under_callgrind`);
`start_counting` zeroes and switches counting on, `stop_counting` switches it off, dumps, and
answers the instructions counted in between.
"""

import subprocess
from pathlib import Path


def under_callgrind(out: Path, command: list[str]) -> list[str]:
    """`command` under callgrind, counting off, its dumps written as `out.<n>`."""
    counting_off = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    return [*counting_off, f"--callgrind-out-file={out}", *command]


def _control(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


def start_counting(pid: int, out: Path) -> None:
    """Forget earlier dumps and counts; count from now on."""
    for old in out.parent.glob(out.name + ".*"):
        old.unlink()
    _control(pid, "-z")
    _control(pid, "-i", "on")


def stop_counting(pid: int, out: Path) -> int:
    """Stop counting; the instructions counted since `start_counting`."""
    _control(pid, "-i", "off")
    _control(pid, "-d")
    total = 0
    for dump in out.parent.glob(out.name + ".*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total
