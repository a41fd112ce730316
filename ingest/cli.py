"""The `falco-ingest` command: parse flags, load settings, set up logging, run."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ingest import __version__
from ingest.errors import AccessRefused, ConfigError, DashboardsFailed, StackError


def _stack(args: argparse.Namespace) -> int:
    import os

    from ingest.stack import manager

    if args.kafka_brokers:
        os.environ["INGEST_STACK_KAFKA_BROKERS"] = str(args.kafka_brokers)
    if args.opensearch_nodes:
        os.environ["INGEST_STACK_OPENSEARCH_NODES"] = str(args.opensearch_nodes)
    if args.action == "up":
        manager.up()
        args.action = "status"
    if args.action == "status":
        rows = manager.status()
        for name, ok, detail in rows:
            print(f"{name:<11} {'healthy' if ok else 'DOWN':<8} {detail}")
        return 0 if all(ok for _, ok, _ in rows) else 1
    manager.down()
    return 0


def _consume(args: argparse.Namespace) -> int:
    from ingest import logs
    from ingest.config import ConsumerSettings, load
    from ingest.consumer.runner import run_consumer

    settings = load(ConsumerSettings, args.config)
    flags = {k: v for k, v in (("topic", args.topic), ("group_id", args.group)) if v}
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update=flags)})
    logs.setup(settings.log_level)
    stats = asyncio.run(run_consumer(settings, stop_when_idle=args.stop_when_idle))
    print(stats.summary())
    return 0


def _agent(args: argparse.Namespace) -> int:
    from ingest import logs
    from ingest.agent.runner import run_agent
    from ingest.config import AgentSettings, load

    settings = load(AgentSettings, args.config)
    logs.setup(settings.log_level)
    result = asyncio.run(run_agent(settings, args.input, once=args.once))
    if not args.once:
        return 0
    if result.spooled_bytes:
        print(
            f"falco-ingest: {result.spooled_bytes} bytes of alerts are still in the spool "
            "(Kafka did not take them in time); the next run sends them",
            file=sys.stderr,
        )
        return 1
    if result.partial_lines:
        for line in result.partial_lines:
            print(
                f"falco-ingest: {line}, not shipped: Falco ends every alert with a newline; "
                "run again once the writer has finished the line (or add the newline)",
                file=sys.stderr,
            )
        return PARTIAL_LINE_EXIT
    return 0


def _setup(args: argparse.Namespace) -> int:
    from ingest import logs
    from ingest.config import OpsSettings, load
    from ingest.ops.setup import run_setup

    settings = load(OpsSettings, args.config)
    logs.setup(settings.log_level)
    return asyncio.run(run_setup(settings, plan_only=args.plan))


def _archive(args: argparse.Namespace) -> int:
    import datetime as dt

    from ingest import logs
    from ingest.config import OpsSettings, load
    from ingest.ops.archive import run_archive

    settings = load(OpsSettings, args.config)
    logs.setup(settings.log_level)
    kw: dict[str, object] = {}
    if args.action == "prune":
        kw["dry_run"] = args.dry_run
    if args.action == "restore":
        if not (args.from_day and args.to_day):
            raise ConfigError("archive restore needs --from DAY and --to DAY (YYYY-MM-DD)")
        kw["first"] = dt.date.fromisoformat(args.from_day)
        kw["last"] = dt.date.fromisoformat(args.to_day)
    return asyncio.run(run_archive(settings, args.action, **kw))


def _audit(args: argparse.Namespace) -> int:
    from ingest import logs
    from ingest.config import OpsSettings, load
    from ingest.ops.audit import run_audit

    if args.audit_command == "verify":
        from ingest.ops.audit import verify

        ok, said = verify(Path(args.report).read_bytes())
        print(f"{args.report}: {said}")
        return 0 if ok else 1
    settings = load(OpsSettings, args.config)
    logs.setup(settings.log_level)
    if args.verify_archive < 0:
        raise ConfigError("audit retention --verify-archive takes a number of days, 0 or more")
    return asyncio.run(
        run_audit(settings, args.format, verify_days=args.verify_archive, save=args.save)
    )


def _dlq(args: argparse.Namespace) -> int:
    from ingest import logs
    from ingest.config import ConsumerSettings, load
    from ingest.sink.replay import replay_dlq

    settings = load(ConsumerSettings, args.config)
    logs.setup(settings.log_level)
    moved = asyncio.run(replay_dlq(settings, idle_s=args.idle, reason=args.reason))
    print(f"replayed {moved} dead-lettered alerts into {settings.kafka.topic}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ingest.demo import run_demo

    return run_demo(Path(args.alerts) if args.alerts else None)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="falco-ingest",
        description="Ship Falco alerts to Kafka and index them into OpenSearch, losing none.",
    )
    p.add_argument("--version", action="version", version=f"falco-ingest {__version__}")
    p.add_argument(
        "--config", type=Path, help="TOML settings file (env INGEST_* variables win over it)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stack", help="fetch, start, check or stop the local Kafka/OpenSearch/S3")
    st.add_argument("action", choices=["up", "down", "status"])
    st.add_argument(
        "--kafka-brokers",
        type=int,
        metavar="N",
        help="brokers of a replicated Kafka, 1-3 (INGEST_STACK_KAFKA_BROKERS, default 1)",
    )
    st.add_argument(
        "--opensearch-nodes",
        type=int,
        metavar="N",
        help="nodes of the OpenSearch cluster, 1-2 (INGEST_STACK_OPENSEARCH_NODES, default 1)",
    )
    st.set_defaults(func=_stack)

    co = sub.add_parser("consume", help="Kafka -> normalised documents -> OpenSearch")
    co.add_argument("--topic", help="source topic (default: INGEST_KAFKA__TOPIC)")
    co.add_argument("--group", help="consumer group (default: INGEST_KAFKA__GROUP_ID)")
    co.add_argument(
        "--stop-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit 0 after this many seconds with nothing left to read",
    )
    co.set_defaults(func=_consume)

    ag = sub.add_parser("agent", help="Falco output on this host -> disk spool -> Kafka")
    ag.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="SPEC",
        help="file:PATH (tail), http://HOST:PORT (receiver) or stdin; repeatable",
    )
    ag.add_argument(
        "--once",
        action="store_true",
        help="read files and stdin to their end, ship everything, exit (backfills, demos)",
    )
    ag.set_defaults(func=_agent)

    se = sub.add_parser("setup", help="apply index templates, mappings and repository")
    se.add_argument(
        "--plan", action="store_true", help="show what would change; exit 2 if the cluster drifted"
    )
    se.set_defaults(func=_setup)

    ar = sub.add_parser("archive", help="list, prune (30 months) or restore archived days")
    ar.add_argument("action", choices=["list", "prune", "restore"])
    ar.add_argument("--dry-run", action="store_true", help="prune: only say what would go")
    ar.add_argument("--from", dest="from_day", metavar="DAY", help="restore: first day")
    ar.add_argument("--to", dest="to_day", metavar="DAY", help="restore: last day")
    ar.set_defaults(func=_archive)

    au = sub.add_parser("audit", help="evidence for auditors")
    ausub = au.add_subparsers(dest="audit_command", required=True)
    rt = ausub.add_parser(
        "retention",
        help="policy in force, every index with its age and ISM state, the archive; "
        "exit 1 on a violation",
    )
    rt.add_argument("--format", choices=["md", "json", "csv"], default="md", help="default: md")
    rt.add_argument(
        "--verify-archive",
        type=int,
        default=0,
        metavar="N",
        help="restore N archived days (the oldest, the newest, then at random) into temporary "
        "indices, compare their counts with the ledger, delete them",
    )
    rt.add_argument(
        "--save",
        metavar="DEST",
        help="also keep the report (md, json, csv) in a folder or s3://BUCKET/PATH",
    )
    rt.set_defaults(func=_audit)
    vf = ausub.add_parser(
        "verify", help="check that a saved report's JSON is unchanged (its sha256); exit 1 if not"
    )
    vf.add_argument("report", help="the report's .json file")
    vf.set_defaults(func=_audit)

    dl = sub.add_parser("dlq", help="dead-letter topic tools")
    dlsub = dl.add_subparsers(dest="dlq_command", required=True)
    rp = dlsub.add_parser("replay", help="re-feed dead-lettered alerts into the main topic")
    rp.add_argument("--reason", help="only records dead-lettered for this reason")
    rp.add_argument("--idle", type=float, default=5.0, help="stop after this many idle seconds")
    rp.set_defaults(func=_dlq)

    de = sub.add_parser(
        "demo", help="stack up, setup, sample alerts through the pipeline, summary of what landed"
    )
    de.add_argument("--alerts", help="JSON-lines file of Falco alerts (default: the samples)")
    de.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, StackError) as exc:
        print(f"falco-ingest: {exc}", file=sys.stderr)
        return 2
    except (AccessRefused, DashboardsFailed) as exc:
        print(f"falco-ingest: {exc}", file=sys.stderr)
        return UNREACHABLE_EXIT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _unreachable(exc)
        if message is None:
            raise
        print(f"falco-ingest: {message}", file=sys.stderr)
        return UNREACHABLE_EXIT


UNREACHABLE_EXIT = 3
PARTIAL_LINE_EXIT = 4


def _unreachable(exc: Exception) -> str | None:
    """One line for a service that did not answer (or refused) where a traceback would say
    no more; None for anything else."""
    from aiokafka.errors import KafkaConnectionError
    from opensearchpy.exceptions import ConnectionError as OpenSearchDown
    from opensearchpy.exceptions import TransportError

    from ingest.sink.client import refusal

    refused = refusal(exc)
    if refused is not None:
        return refused
    if isinstance(exc, OpenSearchDown):
        return f"OpenSearch did not answer: {exc.info or exc.error}"
    if isinstance(exc, TransportError):
        return f"OpenSearch refused the request ({exc.status_code}): {exc.info}"
    if isinstance(exc, KafkaConnectionError):
        return f"Kafka did not answer: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
