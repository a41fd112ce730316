"""The command line: --help everywhere, and one line (not a traceback) when a service is down."""

import socket

import pytest

from ingest.cli import UNREACHABLE_EXIT, main, parser


def commands(p=None, prefix=()):
    """Every command path of the CLI, e.g. ("dlq", "replay")."""
    p = p or parser()
    for action in p._subparsers._group_actions if p._subparsers else []:
        for name, sub in action.choices.items():
            yield (*prefix, name)
            yield from commands(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    paths = list(commands())
    assert {("audit", "retention"), ("dlq", "replay"), ("consume",), ("agent",)} <= set(paths)
    for path in paths:
        with pytest.raises(SystemExit) as done:
            main([*path, "--help"])
        assert done.value.code == 0
        assert "usage: falco-ingest " + " ".join(path) in capsys.readouterr().out


def test_opensearch_down_is_one_line_and_its_own_exit_code(monkeypatch, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("INGEST_OPENSEARCH__URL", f"http://127.0.0.1:{port}")
    assert main(["audit", "retention"]) == UNREACHABLE_EXIT
    err = capsys.readouterr().err
    assert err.startswith("falco-ingest: OpenSearch did not answer:")
    assert err.count("\n") == 1 and str(port) in err


def test_refused_credentials_are_one_line_and_exit_code_3(monkeypatch, capsys):
    from ingest import cli
    from ingest.errors import AccessRefused

    def refused(args):
        raise AccessRefused("OpenSearch refused our credentials: HTTP 401")

    monkeypatch.setattr(cli, "_consume", refused)
    assert main(["consume"]) == UNREACHABLE_EXIT == 3
    assert capsys.readouterr().err == (
        "falco-ingest: OpenSearch refused our credentials: HTTP 401\n"
    )
