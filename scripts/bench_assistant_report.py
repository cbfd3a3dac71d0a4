"""The figures of bench_assistant.py, from what its processes printed and logged.

Every timestamp is this machine's realtime clock (`time.time()`, or the same clock behind
structlog's ISO timestamps), read in the process named:

- *committed*: the writer, right after a customer message's transaction committed;
- *on the broker*: the sink, when the message reached it from its queue on the exchange;
- *reply committed*: the consumers role's `reply_delivered` log line, which the reply policy
  writes right after `DeliverAssistantReply` committed (no await in between);
- *occurred_at*: the event store's stamp, taken in the appending process before its append
  statement: a lower bound of that event's commit.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def distribution(values_s: list[float]) -> dict[str, Any]:
    """p50/p99/max in milliseconds of durations given in seconds."""
    ms = [v * 1000 for v in values_s]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2) if ms else 0.0,
    }


@dataclass
class Reply:
    event_id: str
    received: float
    message_id: str
    occurred_at: float
    answers: list[str]
    action: str
    model_ms: float | None


@dataclass
class Observed:
    """Everything the writer and the sink printed."""

    committed: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    """Customer message id → (committed, occurred_at, its slot in the writer's sequence)."""
    customer: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Customer message id → (its event id, received on the broker)."""
    replies: list[Reply] = field(default_factory=list)
    answered: dict[str, list[Reply]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def forget_messages(self) -> None:
        """Forget the messages so far (a warm-up's), keeping the sink's notes and seen events."""
        self.committed.clear()
        self.customer.clear()
        self.replies.clear()
        self.answered.clear()
        self.notes[:] = [note for note in self.notes if note.startswith("consuming")]

    def take(self, line: str) -> None:
        """Record one line of the writer's or the sink's output."""
        parts = line.split()
        if not parts:
            return
        if parts[0] == "#":
            self.notes.append(" ".join(parts[1:]))
        elif parts[0] == "c":
            self.committed[parts[1]] = (float(parts[2]), float(parts[3]), int(parts[4]))
        elif parts[0] == "m" and parts[3] == "customer":
            self.customer.setdefault(parts[4], (parts[1], float(parts[2])))
        elif parts[0] == "m" and parts[3] == "assistant":
            if parts[1] in self.seen:
                return  # the same event twice on the sink's queue, not a second reply
            self.seen.add(parts[1])
            answers = [] if parts[6] == "-" else parts[6].split(",")
            model_ms = None if parts[8] == "-" else float(parts[8])
            reply = Reply(
                parts[1], float(parts[2]), parts[4], float(parts[5]), answers, parts[7], model_ms
            )
            self.replies.append(reply)
            for message_id in answers:
                self.answered.setdefault(message_id, []).append(reply)


def read_log(path: Path) -> tuple[dict[str, tuple[float, str]], Counter[str]]:
    """From the consumers role's JSON log: each delivered reply's commit time and action by the
    event id of the message whose handler delivered it, and a count of every notable line."""
    delivered: dict[str, tuple[float, str]] = {}
    notable: Counter[str] = Counter()
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            if " - Received" in raw or " - Processed" in raw:
                notable["faststream access lines (plain text, INFO)"] += 1
            elif raw.strip():
                notable["(not JSON)"] += 1
            continue
        if not isinstance(line, dict):
            continue
        name, level = str(line.get("event")), str(line.get("level"))
        if name == "reply_delivered":
            at = datetime.fromisoformat(str(line["timestamp"])).timestamp()
            delivered[str(line.get("event_id"))] = (at, str(line.get("action")))
        elif name == "reply_skipped":
            notable[f"reply_skipped/{line.get('reason')}"] += 1
        elif level in {"warning", "error", "critical"} or name.startswith("reply_"):
            notable[f"{level}: {name}"] += 1
        elif name == "consumer_duplicate_skipped":
            notable[f"{line.get('consumer')}: {name}"] += 1
    return delivered, notable


def read_logs(paths: list[Path]) -> tuple[dict[str, tuple[float, str]], Counter[str]]:
    """`read_log` of several consumers processes, merged."""
    delivered: dict[str, tuple[float, str]] = {}
    notable: Counter[str] = Counter()
    for path in paths:
        theirs, counted = read_log(path)
        twice = delivered.keys() & theirs.keys()
        notable["replies delivered by two processes"] += len(twice)
        delivered |= theirs
        notable += counted
    return delivered, +notable


def figures(obs: Observed, delivered: dict[str, tuple[float, str]]) -> dict[str, Any]:
    """The distributions and the outcome counts of one run."""
    to_broker, to_reply, reply_on_broker, after_sink = [], [], [], []
    to_stamp: list[float] = []
    writer_stamp, reply_stamp = [], []
    timeline: list[tuple[float, float]] = []  # (committed, commit → reply committed)
    unanswered, twice, no_log = [], 0, 0
    first_ms = None
    for message_id, (committed, occurred_at, slot) in obs.committed.items():
        writer_stamp.append(committed - occurred_at)
        seen = obs.customer.get(message_id)
        if seen is not None:
            to_broker.append(seen[1] - committed)
        replies = obs.answered.get(message_id, [])
        if not replies:
            unanswered.append(message_id)
            continue
        twice += len(replies) > 1
        reply = replies[0]
        reply_on_broker.append(reply.received - committed)
        last = obs.customer.get(reply.answers[-1])
        entry = delivered.get(last[0]) if last is not None else None
        if entry is None:
            no_log += 1
            continue
        to_reply.append(entry[0] - committed)
        timeline.append((committed, entry[0] - committed))
        if slot == 0:
            first_ms = round((entry[0] - committed) * 1000, 2)
        to_stamp.append(reply.occurred_at - committed)
        if seen is not None:
            after_sink.append(entry[0] - seen[1])
    for reply in obs.replies:
        last = obs.customer.get(reply.answers[-1]) if reply.answers else None
        entry = delivered.get(last[0]) if last is not None else None
        if entry is not None:
            reply_stamp.append(entry[0] - reply.occurred_at)
    c2b, c2r = distribution(to_broker), distribution(to_reply)
    return {
        "commit_to_broker": c2b,
        "commit_to_reply_committed": c2r,
        "first_message_reply_ms": first_ms,
        "commit_to_reply_on_broker": distribution(reply_on_broker),
        "commit_to_reply_occurred_at": distribution(to_stamp),
        "added_p50_ms": round(c2r["p50_ms"] - c2b["p50_ms"], 2),
        "added_p99_ms": round(c2r["p99_ms"] - c2b["p99_ms"], 2),
        "sink_receipt_to_reply_committed": distribution(after_sink),
        "occurred_at_to_commit": {
            "customer_posts": distribution(writer_stamp),
            "replies": distribution(reply_stamp),
        },
        "model_latency_ms": distribution(
            [r.model_ms / 1000 for r in obs.replies if r.model_ms is not None]
        ),
        "by_second": by_second(timeline),
        "messages": len(obs.committed),
        "replies": len(obs.replies),
        "reply_actions": dict(Counter(r.action for r in obs.replies)),
        "replies_answering_several": sum(len(r.answers) > 1 for r in obs.replies),
        "unanswered": len(unanswered),
        "answered_twice": twice,
        "replies_without_log_line": no_log,
    }


def by_second(timeline: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Commit → reply committed for the messages committed in each second of the posting: a
    stall shows as the seconds whose p99 stands out, a growing backlog as a rising median."""
    if not timeline:
        return []
    start = min(committed for committed, _ in timeline)
    seconds: dict[int, list[float]] = {}
    for committed, latency in timeline:
        seconds.setdefault(int(committed - start), []).append(latency)
    return [{"second": n} | distribution(seconds[n]) for n in sorted(seconds)]


def show(fig: dict[str, Any], target_ms: float) -> bool:
    """Print the figures, each beside the ceiling of the same run; return whether it is met."""

    def line(label: str, d: dict[str, Any]) -> None:
        print(
            f"  {label:<44} p50 {d['p50_ms']:>8.2f} ms  p99 {d['p99_ms']:>8.2f} ms  "
            f"max {d['max_ms']:>8.2f} ms  (n={d['count']})"
        )

    line("commit → broker (customer messages)", fig["commit_to_broker"])
    line("commit → reply committed", fig["commit_to_reply_committed"])
    line("commit → reply received from the broker", fig["commit_to_reply_on_broker"])
    line("  (lower bound: to the reply's occurred_at)", fig["commit_to_reply_occurred_at"])
    line("per message: sink receipt → reply committed", fig["sink_receipt_to_reply_committed"])
    stamps = fig["occurred_at_to_commit"]
    line("occurred_at → commit, customer posts", stamps["customer_posts"])
    line("occurred_at → commit, replies", stamps["replies"])
    line("the model's own latency (reply's details)", fig["model_latency_ms"])
    print(
        "  commit → reply committed by second of commit, p50/p99 ms: "
        + ", ".join(f"{d['p50_ms']:.0f}/{d['p99_ms']:.0f}" for d in fig["by_second"])
    )
    met = bool(
        fig["added_p99_ms"] < target_ms
        and fig["unanswered"] == 0
        and fig["answered_twice"] == 0
        and fig["replies_without_log_line"] == 0
    )
    print(
        f"  the pipeline adds (reply percentile minus commit→broker percentile): "
        f"p50 {fig['added_p50_ms']:+.2f} ms, p99 {fig['added_p99_ms']:+.2f} ms; "
        f"target p99 < {target_ms:g} ms, every message answered once: "
        f"{'met' if met else 'MISSED'}"
    )
    print(
        f"  {fig['messages']} messages, {fig['replies']} replies {fig['reply_actions']}; "
        f"unanswered {fig['unanswered']}, answered twice {fig['answered_twice']}, replies "
        f"answering several {fig['replies_answering_several']}, without a log line "
        f"{fig['replies_without_log_line']}; the very first message's reply took "
        f"{fig['first_message_reply_ms']} ms",
        flush=True,
    )
    return met
