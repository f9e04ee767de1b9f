"""``marketo-sandbox``: run the Marketo emulator as a standalone process."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable
from types import FrameType

from .config import (
    LEGACY_PARAM_AUTH_MODES,
    MISSING_OPPORTUNITY_ANSWERS,
    QUERY_FIELDS_ADDED,
    SALES_PERSON_CHECKS,
    Fault,
    RecordFault,
    SandboxConfig,
)
from .sandbox import Sandbox


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "off", "0") else int(text)


def _choice(
    group: argparse._ArgumentGroup, flag: str, choices: Iterable[str], default: str | None, help: str
) -> None:
    group.add_argument(flag, choices=sorted(choices), default=default, help=help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="marketo-sandbox",
        description="Local emulator of the Marketo REST API (Opportunities and Opportunity Roles).",
    )
    p.add_argument("--port", type=int, required=True, help="TCP port (0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    p.add_argument("--port-file", help="write the bound port to this file")
    g = p.add_argument_group("data set")
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--leads", type=int, default=200)
    g.add_argument("--opportunities", type=int, default=100)
    g.add_argument("--roles-per-opportunity", type=int, default=3)
    g.add_argument("--heavy-leads", type=int, default=1)
    g.add_argument("--heavy-lead-roles", type=int, default=350)
    g.add_argument("--no-doc-examples", action="store_true", help="leave out the Marketo doc examples")
    g.add_argument(
        "--store-file",
        metavar="PATH",
        help="keep the store in this SQLite file instead of memory (its sandbox tables are replaced)",
    )
    g = p.add_argument_group("limits (0 or 'off' disables rate, concurrency and quota limits)")
    g.add_argument("--rate-limit", type=_optional_int, default=100)
    g.add_argument("--rate-window", type=float, default=20.0, help="seconds")
    g.add_argument("--concurrency-limit", type=_optional_int, default=10)
    g.add_argument("--daily-quota", type=_optional_int, default=None)
    g.add_argument("--max-uri-bytes", type=int, default=8192)
    g.add_argument("--max-body-bytes", type=int, default=1_048_576)
    g.add_argument("--token-ttl", type=float, default=3600.0, help="access token lifetime in seconds")
    g.add_argument("--latency", type=float, default=0.0, help="seconds added to every REST call")
    g = p.add_argument_group("behaviour")
    g.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="KIND:RATE (e.g. 606:0.1) or KIND@N,M (REST call numbers); add +after for write faults "
        "answered after the write is applied, ~SECONDS for the delay of 'slow' and 'late' (a write "
        "whose connection drops and that is applied SECONDS later, e.g. late@3~2). Repeatable.",
    )
    g.add_argument(
        "--record-fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="CODE[@KEY,KEY...] with optional suffixes xN (times per record, x* forever; default 1), "
        ":RATE and /opportunity or /opportunity_role: sync/delete records skipped with a transient "
        "reason (1014, 1019, 1022, 1029), e.g. 1014@OPP-1,OPP-2x2. Repeatable.",
    )
    g.add_argument("--crm-sync", action="store_true", help="emulate an instance with native CRM sync")
    _choice(
        g,
        "--missing-opportunity-code",
        MISSING_OPPORTUNITY_ANSWERS,
        "1004",
        "skip code of a role whose opportunity does not exist (Marketo's docs do not say)",
    )
    _choice(
        g,
        "--sales-person-check",
        SALES_PERSON_CHECKS,
        None,
        "externalSalesPersonId must name a seeded sales person; an unknown one gets 718 "
        "for the whole call (response) or for its record (record)",
    )
    g = p.add_argument_group("unverified Marketo behaviours (the defaults are the strictest)")
    g.add_argument("--filter-case-insensitive", action="store_true", help="string filters ignore case")
    g.add_argument(
        "--filter-values-trimmed", action="store_true", help="drop whitespace around filterValues commas"
    )
    _choice(
        g,
        "--legacy-param-auth",
        LEGACY_PARAM_AUTH_MODES,
        "refused",
        "what an access_token query parameter gets",
    )
    _choice(
        g,
        "--query-fields-added",
        QUERY_FIELDS_ADDED,
        "idField",
        "what a query with fields returns besides them",
    )
    g.add_argument(
        "--spec-complete",
        action="store_true",
        help="every member the Swagger spec marks required, also where the doc examples omit it",
    )
    g = p.add_argument_group("switches")
    g.add_argument("--trailing-empty-page", action="store_true")
    g.add_argument("--no-more-result", action="store_true", help="never emit moreResult")
    g.add_argument("--no-gzip", action="store_true")
    g.add_argument("--log-requests", action="store_true", help="log each request to stderr")
    return p


#: Options whose value is the config field of the same name as it is.
_SAME_NAME = (
    "client_id", "client_secret", "host", "port", "seed", "leads", "opportunities",
    "roles_per_opportunity", "heavy_leads", "heavy_lead_roles", "store_file", "rate_limit",
    "concurrency_limit", "daily_quota", "max_uri_bytes", "max_body_bytes", "crm_sync",
    "missing_opportunity_code", "trailing_empty_page", "sales_person_check", "filter_values_trimmed",
    "legacy_param_auth", "query_fields_added", "spec_complete",
)  # fmt: skip


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        **{name: getattr(args, name) for name in _SAME_NAME},
        include_doc_examples=not args.no_doc_examples,
        rate_window_seconds=args.rate_window,
        token_ttl_seconds=args.token_ttl,
        latency_seconds=args.latency,
        faults=[Fault.parse(spec) for spec in args.fault],
        record_faults=[RecordFault.parse(spec) for spec in args.record_fault],
        emit_more_result=not args.no_more_result,
        gzip=not args.no_gzip,
        filter_case_sensitive=not args.filter_case_insensitive,
    )


def _write_port_file(path: str, port: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".port-")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sandbox = Sandbox(cfg, log_requests=args.log_requests)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"marketo-sandbox: cannot listen on {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 1
    try:
        if args.port_file:
            _write_port_file(args.port_file, sandbox.port)
        print(f"marketo-sandbox listening on {sandbox.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
