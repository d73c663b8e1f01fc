"""The `tajo` command line: subcommands mirror the connector's hooks; exit codes follow error families.

Exit codes: 0 success; 1 finished with dead-lettered records; 2 configuration or usage error;
3 authentication, permission or connection error; 4 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from .errors import (
    ApiError,
    ConfigError,
    ConnectorError,
    Interrupted,
    MappingError,
    NotAvailableError,
    StateError,
    UsageError,
)
from .sync.registry import optional_module

EXIT_OK, EXIT_DEAD_LETTERS, EXIT_USAGE, EXIT_AUTH, EXIT_INTERRUPTED = 0, 1, 2, 3, 4


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, Interrupted | KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, ApiError):
        return EXIT_AUTH
    if isinstance(exc, ConfigError | MappingError | UsageError | NotAvailableError | StateError):
        return EXIT_USAGE
    return EXIT_USAGE


class CliUsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliUsageError(f"{self.prog}: {message}")


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument("--config", default="tajo.yaml" if top else argparse.SUPPRESS,
                        help="path to tajo.yaml (default ./tajo.yaml)")
    parser.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS)
    del default


def build_parser() -> argparse.ArgumentParser:
    root = _Parser(prog="tajo", description="tajo connectors: Braze <-> Brevo")
    _common(root, top=True)
    top = root.add_subparsers(dest="command", required=True, parser_class=_Parser)

    conn = top.add_parser("connectors", help="run a connector hook")
    actions = conn.add_subparsers(dest="action", required=True, parser_class=_Parser)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text)
        p.add_argument("connector", choices=["braze"], help="connector id")
        _common(p, top=False)
        return p

    p = action("install", "validate config, check keys, create Brevo attributes, store credentials")
    p.add_argument("--api-key", help="Braze REST API key (stored encrypted)")
    p.add_argument("--instance-url", help="Braze REST host, e.g. rest.iad-01.braze.com")
    p.add_argument("--brevo-api-key", help="Brevo API key (stored encrypted)")
    action("test", "named checks of both APIs with cause and fix")
    p = action("sync", "sync resources")
    p.add_argument("--full", action="store_true", help="write every record, not only changes")
    p.add_argument("--resources", help="comma-separated: users,segments,campaigns,canvases,events,catalogs")
    p.add_argument("--since", help="only users created or active since YYYY-MM-DD")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--dry-run", action="store_true", help="show the plan; write nothing")
    p.add_argument("--direction", choices=["braze_to_brevo", "brevo_to_braze", "both"])
    p = action("export-segment", "export a Braze segment into a Brevo list")
    p.add_argument("--segment-id", required=True)
    p.add_argument("--target-list", type=int)
    p.add_argument("--include-attributes", help="comma-separated Braze field names")
    action("status", "connection, last sync, counts, cursors, dead letters")
    p = action("handle-event", "forward webhook events read from stdin (JSON or JSON lines)")
    p.add_argument("--source", required=True, choices=["braze", "brevo"])
    p = action("dead-letters", "list (or retry) records that could not be written")
    p.add_argument("--retry", action="store_true")
    p.add_argument("--resource")
    p.add_argument("--limit", type=int, default=50)
    p = action("report", "campaign and Canvas analytics report")
    p.add_argument("--format", choices=["html", "csv", "json"], default="html")
    p.add_argument("--since")
    p.add_argument("--out")
    p = action("serve", "webhook receiver for users without a host runtime")
    p.add_argument("--port", type=int, default=8787)

    p = top.add_parser("sandbox", help="serve the local Braze and Brevo emulators")
    _common(p, top=False)
    p.add_argument("--port", type=int, default=8900)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--contacts", type=int)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--faults")
    p.add_argument("--limits", choices=["enforce", "count", "off"], default="enforce")
    p.add_argument("--data", help="persist sandbox state in this file between starts")
    p.add_argument("--export-delay", type=float, default=0.0)
    p.add_argument("--import-delay", type=float, default=0.0)

    p = top.add_parser("demo", help="a full round trip against the sandbox; needs no account or network")
    _common(p, top=False)
    p.add_argument("--users", type=int, default=2_000)
    return root


# ---------------------------------------------------------------------------- output
class Output:
    def __init__(self, stream: IO[str], as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json

    def emit(self, data: Any, human: Callable[[], str]) -> None:
        if self.as_json:
            self.stream.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        else:
            self.stream.write(human() + "\n")

    def error(self, exc: BaseException, code: int) -> None:
        message = exc.user_message if isinstance(exc, ConnectorError) else str(exc)
        fix = exc.fix if isinstance(exc, ConnectorError) else ""
        if self.as_json:
            self.stream.write(json.dumps({"error": message, "fix": fix, "exit_code": code}, sort_keys=True) + "\n")
        else:
            sys.stderr.write(f"error: {message}\n" + (f"fix: {fix}\n" if fix else ""))


def render_checks(checks: Sequence[dict[str, Any]]) -> str:
    lines = []
    for c in checks:
        mark = "✓" if c["ok"] else "✗"
        lines.append(f"{mark} {c['name']}: {c['cause']}")
        if not c["ok"] and c.get("fix"):
            lines.append(f"    fix: {c['fix']}")
    passed = sum(1 for c in checks if c["ok"])
    lines.append(f"{passed}/{len(checks)} checks passed")
    return "\n".join(lines)


def render_sync(summary: dict[str, Any], *, show_calls: bool = True) -> str:
    head = f"{'Dry run' if summary['dry_run'] else 'Sync'} ({summary['type']}): {summary['status']}"
    lines = [head]
    for r in summary["resources"]:
        label = r["resource"]
        if label == "users":
            label = "users→braze" if r.get("direction") == "brevo_to_braze" else "users→brevo"
        lines.append(
            f"  {label:<12} read {r['read']:>8}  created {r['created']:>7}  updated {r['updated']:>7}  "
            f"unchanged {r['unchanged']:>8}  skipped {r['skipped']:>6}  failed {r['failed']:>6}  "
            f"{r['duration_s']:.1f}s"
        )
        for note in r.get("notes", []):
            lines.append(f"      note: {note}")
        plan = r.get("plan")
        if plan:
            lines.append(f"      plan: create {plan['create']}, update {plan['update']}, unchanged "
                         f"{plan['unchanged']}, reject {plan['reject']}; calls {plan['brevo_calls']}")
            for reason, n in sorted(plan.get("rejections_by_reason", {}).items()):
                lines.append(f"      reject {n:>6} × {reason}")
            for diff in plan.get("diffs", []):
                changes = ", ".join(f"{k}: {v['from']!r} → {v['to']!r}" for k, v in list(diff["changes"].items())[:6])
                lines.append(f"      {diff['action']} {diff['key']}: {changes}")
    calls = summary.get("api_calls") or {}
    if calls and show_calls:
        lines.append("  API calls: " + ", ".join(f"{k} ×{v}" for k, v in sorted(calls.items())))
    if summary["failed"]:
        lines.append(f"  {summary['failed']} record(s) dead-lettered: `tajo connectors dead-letters braze`")
    return "\n".join(lines)


def render_mapping(data: dict[str, Any], indent: str = "") -> str:
    lines = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines.append(render_mapping(value, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- commands
def _progress_factory(args: argparse.Namespace) -> Callable[[], Any]:
    from .progress import TerminalProgress

    return lambda: TerminalProgress(sys.stderr, enabled=sys.stderr.isatty() and not args.json)


def run_connector_action(args: argparse.Namespace, out: Output) -> int:
    from .connector import BrazeConnector

    connector = BrazeConnector(args.config, progress=_progress_factory(args))
    try:
        if args.action == "install":
            report = connector.install(args.api_key, args.instance_url, args.brevo_api_key)
            out.emit(report, lambda: "Installed.\n" + render_mapping(report))
            return EXIT_OK if report["ok"] else EXIT_USAGE
        if args.action == "test":
            checks = connector.test()
            out.emit(checks, lambda: render_checks(checks))
            if all(c["ok"] for c in checks):
                return EXIT_OK
            return EXIT_AUTH
        if args.action == "sync":
            resources = [r.strip() for r in args.resources.split(",") if r.strip()] if args.resources else None
            summary = connector.sync(
                type="full" if args.full else "incremental",
                resources=resources,
                since=args.since,
                batch_size=args.batch_size,
                dry_run=args.dry_run,
                direction=args.direction,
            )
            out.emit(summary, lambda: render_sync(summary))
            return EXIT_DEAD_LETTERS if summary["failed"] and not args.dry_run else EXIT_OK
        if args.action == "status":
            status = connector.status()
            out.emit(status, lambda: render_mapping(status))
            return EXIT_OK
        if args.action == "dead-letters":
            if args.retry:
                retried = connector.retry_dead_letters(args.resource)
                out.emit(retried, lambda: render_mapping(retried))
                return EXIT_DEAD_LETTERS if retried["still_failing"] else EXIT_OK
            letters = connector.dead_letters(args.resource, limit=args.limit)
            out.emit(letters, lambda: "\n".join(
                f"{d['resource']}  {d['key']}  ×{d['attempts']}  {d['reason']}" for d in letters
            ) or "No dead letters.")
            return EXIT_OK
        if args.action == "export-segment":
            attrs = [a.strip() for a in args.include_attributes.split(",")] if args.include_attributes else None
            result = connector.export_segment(args.segment_id, args.target_list, attrs)
            out.emit(result, lambda: render_mapping(result))
            return EXIT_OK
        if args.action == "handle-event":
            payloads = _read_events(sys.stdin)
            results = [connector.handle_event(args.source, p) for p in payloads]
            out.emit(results, lambda: f"{len(results)} payload(s) handled")
            return EXIT_OK
        if args.action == "report":
            text = connector.report(format=args.format, since=args.since)
            if args.out:
                Path(args.out).write_text(text, encoding="utf-8")
                out.emit({"out": args.out, "format": args.format}, lambda: f"Report written to {args.out}")
            else:
                out.stream.write(text if text.endswith("\n") else text + "\n")
            return EXIT_OK
        if args.action == "serve":
            module = optional_module("tajo_braze.webhooks")
            if module is None:
                raise NotAvailableError("`tajo connectors serve` is not available yet in this version.")
            return int(module.serve(connector, port=args.port, stream=out.stream))
        raise NotAvailableError(f"`tajo connectors {args.action}` is not available yet in this version.")
    finally:
        connector.close()


def _read_events(stream: IO[str]) -> list[Any]:
    text = stream.read().strip()
    if not text:
        raise UsageError("No event on standard input.", fix="Pipe one JSON payload or JSON lines into the command.")
    try:
        return [json.loads(text)]
    except RecursionError:
        raise UsageError("Standard input is JSON nested too deeply to accept.") from None
    except ValueError:
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"Standard input is neither JSON nor JSON lines ({type(exc).__name__}).") from None


def main(argv: Sequence[str] | None = None, *, stdout: IO[str] | None = None) -> int:
    stream = stdout or sys.stdout
    as_json = "--json" in (argv if argv is not None else sys.argv[1:])
    out = Output(stream, as_json)
    try:
        args = build_parser().parse_args(argv)
    except CliUsageError as exc:
        out.error(UsageError(str(exc), fix="See `tajo --help`."), EXIT_USAGE)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    out = Output(stream, bool(args.json))
    try:
        if args.command == "connectors":
            return run_connector_action(args, out)
        if args.command == "sandbox":
            from .sandbox_cli import run_sandbox

            return run_sandbox(args, out.stream)
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(out.stream, users=args.users, as_json=args.json)
    except (ConnectorError, KeyboardInterrupt) as exc:
        code = exit_code_for(exc)
        out.error(exc, code)
        return code
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
