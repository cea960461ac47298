"""The chaos soak's verdict (`chaos_soak.py`): a run's folder (run.json and the sinks'
pages.jsonl) judged by chaos_ledger and printed; also `--reanalyse`."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from chaos_config import policy_levels
from chaos_ledger import (
    BROKER,
    REDIS,
    SERVICE,
    AlertVerdict,
    Kill,
    Msg,
    PageVerdict,
    SentAlert,
    StoredAlert,
    is_clear,
    judge_alerts,
    judge_pages,
    late_by_kill,
    parse_page,
    percentile,
)


def save_run(folder: Path, run: dict[str, Any]) -> None:
    """Everything the verdict is computed from (with pages.jsonl), for --reanalyse."""
    (folder / "run.json").write_text(json.dumps(run))


def load_run(folder: Path) -> dict[str, Any]:
    run: dict[str, Any] = json.loads((folder / "run.json").read_text())
    run["kills"] = [Kill(**k) for k in run["kills"]]
    run["stored"] = [StoredAlert(**a) for a in run["stored"]]
    run["sent"] = {
        t: SentAlert(
            type=a["type"],
            firing=[Msg(**m) for m in a["firing"]],
            ack=Msg(**a["ack"]) if a["ack"] else None,
            resolve=Msg(**a["resolve"]) if a["resolve"] else None,
        )
        for t, a in run["sent"].items()
    }
    return run


def analyse(folder: Path, args: argparse.Namespace) -> int:
    run = load_run(folder)
    pages_file = folder / "pages.jsonl"
    raws = [
        json.loads(line)
        for line in pages_file.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    pages = [parse_page(raw) for raw in raws if not is_clear(raw)]
    levels = policy_levels(run["levels"])
    stored: list[StoredAlert] = run["stored"]
    alerts = judge_alerts(
        run["sent"],
        {a.type: a for a in stored},
        run["kills"],
        last_level=len(levels) - 1,
        save_s=run["broker_save"],
    )
    judged = judge_pages(
        {a.id: a for a in stored},
        pages,
        levels,
        run["kills"],
        end=run["end"],
        margin_s=args.margin,
        late_s=args.late,
        window_s=args.window,
        save_s=run["broker_save"],
    )
    judged.clears = sum(map(is_clear, raws))
    return report(args, folder, run, alerts, judged)


def report(
    args: argparse.Namespace,
    folder: Path,
    run: dict[str, Any],
    alerts: AlertVerdict,
    pages: PageVerdict,
) -> int:
    sent: dict[str, SentAlert] = run["sent"]
    soak_kills: list[Kill] = run["kills"]
    t0: float = run["t0"]
    msgs = sum(len(s.messages()) for s in sent.values())
    acks = sum(1 for s in sent.values() if s.ack is not None)
    resolves = sum(1 for s in sent.values() if s.resolve is not None)
    kills = Counter(k.target for k in soak_kills)
    stored: list[StoredAlert] = run["stored"]
    retained_off = sum(1 for a in stored if run["retained"].get(a.id, "") != a.state)

    def show(items: list[Any], limit: int = 4) -> str:
        return "" if not items else "   e.g. " + "; ".join(str(i) for i in items[:limit])

    print()
    print(
        f"kills: {len(soak_kills)} ({kills[SERVICE]} service, {kills[BROKER]} broker,"
        f" {kills[REDIS]} redis)"
    )
    print(
        f"sent: {msgs} messages = {len(sent)} new alerts, "
        f"{msgs - len(sent) - acks - resolves} repeats, {acks} acks, {resolves} resolves"
        f" ({run['skipped_acks']} acks not sent: alert never seen); not PUBACKed at the end:"
        f" {run['unacked']}"
    )
    late_sorted = sorted(pages.late, key=lambda x: -x[2])
    rows = [
        ("alerts lost (sent, never stored)", len(alerts.lost), show(alerts.lost)),
        ("alerts in a wrong final state", len(alerts.wrong), show(alerts.wrong)),
        (
            "alerts with a wrong count (info)",
            len(alerts.count_high) + len(alerts.count_low),
            show(alerts.count_high + alerts.count_low),
        ),
        (
            "  in a broker kill's unsaved window: lost/wrong/count",
            f"{len(alerts.lost_broker)}/{len(alerts.wrong_broker)}/{len(alerts.count_broker)}",
            show(alerts.lost_broker + alerts.wrong_broker + alerts.count_broker, 3),
        ),
        (
            "pages expected (+ allowed in the race margin)",
            f"{pages.expected} (+{pages.allowed})",
            f"   received {pages.received}",
        ),
        ("pages missed (never arrived)", len(pages.missed), show(pages.missed)),
        ("  mqtt pages a broker kill took (not counted)", len(pages.missed_broker), ""),
        (
            f"pages late (> {args.late:g} s after due)",
            len(pages.late),
            show([(k, f"{lat:.1f}s") for k, _d, lat in late_sorted]),
        ),
        (
            "  late only by the service's restart (not counted)",
            len(pages.late_restart),
            show([(k, f"{lat:.1f}s") for k, _d, lat in pages.late_restart]),
        ),
        ("pages doubled", len(pages.doubled), show(pages.doubled)),
        (
            f"  doubled in the at-least-once window ({args.window:g} s)",
            len(pages.doubled_window),
            show(pages.doubled_window),
        ),
        (
            "  mqtt pages the broker sent again after its kill",
            len(pages.doubled_broker),
            show(pages.doubled_broker),
        ),
        ("pages unexpected", len(pages.unexpected), show(pages.unexpected)),
        ("pages not attributable (no soak tag)", pages.unattributed, ""),
        ("  mqtt clears of acked or resolved alerts (not pages)", pages.clears, ""),
        ("retained state differs from Redis (info)", retained_off, f"   of {len(stored)} stored"),
    ]
    print()
    for name, value, detail in rows:
        print(f"{name:<52}{value!s:>10}{detail}")
    lat = pages.lateness
    print(
        f"\nlateness of required pages (s): p50 {percentile(lat, 50):.2f}  p99"
        f" {percentile(lat, 99):.2f}  max {max(lat, default=float('nan')):.2f}"
    )
    by_alert = {a.id: a for a in stored}
    for name, keys in (
        ("missed", pages.missed),
        ("late", [k for k, _d, _l in late_sorted]),
        ("doubled", pages.doubled),
    ):
        if keys:
            channels = Counter(k[2] for k in keys)
            print(
                f"{name} pages by channel: "
                + ", ".join(f"{ch} {n}" for ch, n in sorted(channels.items()))
                + f"; by (alert, level): {level_summary(keys, by_alert, run)}"
            )
    if pages.late:
        print(
            "late pages by the kill that started it: "
            + ", ".join(f"{k}: {n}" for k, n in late_by_kill(pages.late, soak_kills, t0).items())
        )
    log = run["log"]
    print(
        f"service log lines per minute: {log['per_minute']} (homealert_mqtt's own:"
        f" {log['ours']}); tracebacks: {log['tracebacks']}; most frequent:"
    )
    for text, n in log["shapes"][:5]:
        print(f"  {n:>7} x {text}")
    print("kill timeline (s after the start):")
    for k in soak_kills:
        print(f"  +{k.at - t0:6.1f}  kill -9 {k.target:<8} back after {k.back - k.at:.2f} s")
    failures = {
        "lost": len(alerts.lost),
        "wrong state": len(alerts.wrong),
        "missed": len(pages.missed),
        "doubled": len(pages.doubled),
        "late": len(pages.late),
    }
    bad = {k: v for k, v in failures.items() if v}
    verdict = (
        "PASS (0 lost, 0 wrong state, 0 missed, 0 doubled, 0 late)"
        if not bad
        else "FAIL (" + ", ".join(f"{v} {k}" for k, v in bad.items()) + ")"
    )
    print(f"\nVERDICT: {verdict}; everything in {folder}")
    if args.json:
        result = {
            "failures": failures,
            "alerts": alerts.__dict__,
            "pages": {k: v for k, v in pages.__dict__.items() if k != "lateness"},
            "log": log,
            "kills": [k.__dict__ | {"t": k.at - t0} for k in soak_kills],
            "folder": str(folder),
        }
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 1 if bad else 0


def level_summary(
    keys: list[tuple[str, int, str, str]],
    alerts: dict[str, StoredAlert],
    run: dict[str, Any],
    limit: int = 8,
) -> str:
    """`<id> L<level> x<pages> (due +<s>, stop +<s>)`: one entry per (alert, level), in
    seconds after the start, to set beside the kill timeline."""
    t0, delays = run["t0"], run["levels"]
    counted = Counter((k[0], k[1]) for k in keys)
    parts = []
    for (alert_id, level), n in list(counted.items())[:limit]:
        alert = alerts[alert_id]
        due = alert.opened_ms / 1000 + delays[level] - t0
        stop = f"{alert.stop_ms / 1000 - t0:.1f}" if alert.stop_ms else "-"
        parts.append(f"{alert_id} L{level} x{n} (due +{due:.1f}, stop +{stop})")
    more = len(counted) - limit
    return "; ".join(parts) + (f"; ... {more} more" if more > 0 else "")
