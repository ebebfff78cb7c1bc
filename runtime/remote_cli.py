"""``journeys deploy`` and ``journeys pull``: journeys as code, against a
running API, so journeys can live in git and be deployed from CI after
``journeys test``.

``journeys deploy FILE… [--server URL] [--key KEY] [--id ID] [--draft]
[--skip-tests]`` first runs each file's journey tests (the sibling
``X.test.toml`` of ``X.journey``, when there is one) and deploys nothing
when any case fails — a journey that changed behaviour must not reach
anyone because CI forgot a step; ``--skip-tests`` is the explicit way
round. Then, per file, it prints the diff against the deployed version
(the server's current source for that id) and posts the text: a refused
text prints the server's diagnostics in the language's own format (``file:
line:col: error[E101]: …``, the line, a caret, the hint, as ``journeys
check`` prints them, rendered over the local file), a deployed one its
version, or that it was unchanged.

``journeys pull JOURNEY_ID [-o FILE]`` writes the deployed source of the
journey's current version to FILE (or standard output).

The server and key come from ``--server``/``--key``, else
``JOURNEYS_SERVER`` (default ``http://127.0.0.1:8000``) and
``JOURNEYS_KEY``; the key is sent as ``Authorization: Bearer`` and never
printed. Exit codes: 0 done; 1 refused (a failing journey test, a journey
with errors, a key without the role); 2 cannot run (no such file, the
server unreachable or answering something else).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from dsl import JourneyError, check, parse
from dsl.errors import Diagnostic
from dsl.ids import slug
from dsl.limits import MAX_SOURCE_CHARS
from runtime.journey_tests import SUFFIX as TEST_SUFFIX
from runtime.journey_tests import FileReport, JourneyTestError, format_report, run_tests
from runtime.simulate_cli import exiting

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_ENV = "JOURNEYS_SERVER"
KEY_ENV = "JOURNEYS_KEY"
JOURNEY_SUFFIX = ".journey"
TIMEOUT_SECONDS = 60.0
MAX_FILES = 100  # in one deploy


class RemoteError(Exception):
    """Something that stops the command; ``code`` is its exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Remote:
    """The API a command talks to."""

    server: str
    key: str | None

    @classmethod
    def of(cls, args: argparse.Namespace) -> Remote:
        server = (args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")
        if not server.startswith(("http://", "https://")):
            raise RemoteError(f"--server {server!r}: a URL like {DEFAULT_SERVER}")
        return cls(server, args.key or os.environ.get(KEY_ENV) or None)

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return httpx.Client(base_url=self.server, headers=headers, timeout=TIMEOUT_SECONDS)

    def call(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.server}: {type(exc).__name__}: {exc}") from None


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:500]}
    return body if isinstance(body, dict) else {"detail": str(body)[:500]}


def _refusal(remote: Remote, response: httpx.Response, what: str) -> RemoteError:
    """An answer that is not the one hoped for, as the operator should read
    it: the key (401/403) is a refusal (exit 1), anything else a failure."""
    detail = _problem(response).get("detail") or response.reason_phrase
    if response.status_code == 401:
        where = f"--key or {KEY_ENV}"
        return RemoteError(f"{what}: {remote.server} refused the key ({detail}); give one with {where}", 1)
    if response.status_code == 403:
        return RemoteError(f"{what}: the key may not do this ({detail})", 1)
    return RemoteError(f"{what}: {remote.server} answered {response.status_code}: {detail}")


def _read(path: Path) -> str:
    """The journey's text; a file too big to be a journey is not read
    (UTF-8 takes at most 4 bytes a character), nor is one that is not a
    file."""
    try:
        size = path.stat().st_size
        if size > 4 * MAX_SOURCE_CHARS:
            raise RemoteError(f"{path}: {size:,} bytes is too big for a journey", 1)
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RemoteError(f"{path}: cannot read: {exc}") from None


def test_file_of(path: Path) -> Path | None:
    """The journey tests beside ``X.journey`` (``X.test.toml``), if any."""
    name = path.name.removesuffix(JOURNEY_SUFFIX) + TEST_SUFFIX
    sibling = path.with_name(name)
    return sibling if sibling.is_file() else None


def _journey_id(source: str, path: Path, given: str | None) -> str | None:
    """The id the server will deploy under: ``--id``, else the slug of the
    journey's name (the server's default); None when the text does not
    parse (the server's diagnostics will say why)."""
    if given:
        return given
    try:
        return slug(parse(source, str(path)).name)
    except (JourneyError, RecursionError):
        return None


def _local_diagnostics(source: str, filename: str) -> dict[tuple[str, int, int], Diagnostic]:
    """The language's own diagnostics of the local text, by (code, line,
    column): the server's items carry no caret width, these do."""
    try:
        found = check(parse(source, filename), source, filename)
    except JourneyError as exc:
        found = exc.diagnostics
    except RecursionError:
        return {}
    return {(d.code, d.line, d.column): d for d in found}


def render_errors(errors: list[dict[str, Any]], source: str, filename: str) -> list[str]:
    """The server's error items in the language's own format over the local
    text, as ``journeys check`` prints them (the caret as wide as the local
    check makes it for the same code and place); an item without a
    position, e.g. a body field, as one line."""
    local = _local_diagnostics(source, filename) if errors else {}
    out = []
    for item in errors:
        line, column = item.get("line"), item.get("column")
        severity = "warning" if item.get("severity") == "warning" else "error"
        if isinstance(line, int) and isinstance(column, int):
            diagnostic = Diagnostic(
                str(item.get("code") or "E000"),
                str(item.get("message") or ""),
                line,
                column,
                hint=item.get("hint"),
                severity=severity,
                end_column=getattr(local.get((str(item.get("code")), line, column)), "end_column", None),
            )
            out.append(diagnostic.render(source, filename))
        else:
            where = f" ({item['field']})" if item.get("field") else ""
            out.append(f"{filename}: {severity}[{item.get('code') or 'E000'}]: {item.get('message')}{where}")
    return out


def _run_tests(paths: list[Path], out: TextIO) -> bool:
    """The journey tests of these files, printed; True when all passed."""
    if not paths:
        return True
    try:
        reports: list[FileReport] = asyncio.run(run_tests(paths))
    except JourneyTestError as exc:
        out.write(f"journeys deploy: {exc}\n")
        return False
    for report in reports:
        out.write(format_report(report))
    return all(report.passed for report in reports)


def _diff(remote: Remote, client: httpx.Client, journey_id: str | None, source: str, path: Path) -> str:
    """What deploying changes: the unified diff against the deployed source,
    ``new journey`` when there is none."""
    if journey_id is None:
        return ""
    response = remote.call(client, "GET", f"/v1/journeys/{journey_id}")
    if response.status_code == 404:
        return f"{path}: new journey {journey_id}\n"
    if response.status_code != 200:
        raise _refusal(remote, response, f"{path}: reading the deployed {journey_id}")
    deployed = str(response.json().get("source") or "")
    if deployed == source:
        return f"{path}: same text as the deployed {journey_id}\n"
    return "".join(
        difflib.unified_diff(
            deployed.splitlines(keepends=True),
            source.splitlines(keepends=True),
            fromfile=f"{journey_id} (deployed)",
            tofile=str(path),
        )
    )


def _deploy_one(
    remote: Remote, client: httpx.Client, path: Path, source: str, args: argparse.Namespace, out: TextIO
) -> int:
    journey_id = _journey_id(source, path, args.id)
    diff = _diff(remote, client, journey_id, source, path)
    out.write(diff if diff.endswith("\n") or not diff else diff + "\n")
    body: dict[str, Any] = {"source": source, "draft": args.draft}
    if args.id:
        body["id"] = args.id
    response = remote.call(client, "POST", "/v1/journeys", json=body)
    if response.status_code == 422:
        problem = _problem(response)
        errors = problem.get("errors") or []
        for text in render_errors(errors, source, str(path)):
            out.write(text + "\n")
        out.write(f"{path}: not deployed: {problem.get('detail', 'refused')}\n")
        return 1
    if response.status_code not in (200, 201):
        raise _refusal(remote, response, f"{path}: deploy")
    deployed = response.json()
    for text in render_errors(deployed.get("warnings") or [], source, str(path)):
        out.write(text + "\n")
    jid = deployed["journey"]["id"]
    if deployed.get("created"):
        out.write(f"{path}: deployed {jid} version {deployed['version']} ({deployed['journey']['status']})\n")
    else:
        out.write(f"{path}: unchanged, {jid} is at version {deployed['version']}\n")
    return 0


def cmd_deploy(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Test, then diff and deploy each file; see the module docstring."""
    out = out or sys.stdout
    try:
        remote = Remote.of(args)
        paths = [Path(p) for p in args.files]
        if len(paths) > MAX_FILES:
            raise RemoteError(f"{len(paths)} files: at most {MAX_FILES} in one deploy")
        if args.id and len(paths) > 1:
            raise RemoteError("--id names one journey: deploy one file with it")
        sources = {path: _read(path) for path in paths}
        if args.skip_tests:
            out.write("journeys deploy: journey tests skipped (--skip-tests)\n")
        else:
            tests = [t for t in (test_file_of(p) for p in paths) if t is not None]
            if not _run_tests(tests, out):
                out.write("journeys deploy: a journey test failed: nothing deployed (--skip-tests to deploy anyway)\n")
                return 1
        code = 0
        with remote.client() as client:
            for path in paths:
                code = max(code, _deploy_one(remote, client, path, sources[path], args, out))
        return code
    except RemoteError as exc:
        out.write(f"journeys deploy: {exc}\n")
        return exc.code


def cmd_pull(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Write the deployed source of a journey's current version."""
    out = out or sys.stdout
    try:
        remote = Remote.of(args)
        wanted = getattr(args, "version", None)
        path = f"/v1/journeys/{args.journey_id}" + (f"/versions/{wanted}" if wanted else "")
        with remote.client() as client:
            response = remote.call(client, "GET", path)
        if response.status_code == 404:
            what = f"journey {args.journey_id!r} version {wanted}" if wanted else f"journey {args.journey_id!r}"
            raise RemoteError(f"no {what} on {remote.server}", 1)
        if response.status_code != 200:
            raise _refusal(remote, response, f"pull {args.journey_id}")
        detail = response.json()
        source = str(detail.get("source") or "")
        if wanted:
            detail["current_version"] = detail.get("version")
        if detail.get("current_version") is None or not source:
            raise RemoteError(f"journey {args.journey_id!r} has no deployed version", 1)
        if args.output:
            try:
                Path(args.output).write_text(source, encoding="utf-8")
            except OSError as exc:
                raise RemoteError(f"{args.output}: cannot write: {exc}") from None
            print(f"wrote {args.output} ({args.journey_id} version {detail['current_version']})", file=out)
        else:
            out.write(source)
        return 0
    except RemoteError as exc:
        print(f"journeys pull: {exc}", file=out)
        return exc.code


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help=f"the API's base URL (default ${SERVER_ENV}, else {DEFAULT_SERVER})")
    parser.add_argument("--key", help=f"an API key (default ${KEY_ENV}); deploying needs the operator role")


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """``deploy`` and ``pull``. Deploy ends the process as soon as it is
    done (``runtime.simulate_cli.exiting``): its journey tests ran a
    time-skipping server, whose native threads may abort the interpreter's
    finalization and turn a deploy that worked into a crash's exit code."""
    deploy = subparsers.add_parser("deploy", help="run a journey's tests, diff and deploy it to a running API")
    deploy.add_argument("files", nargs="+", metavar="FILE", help=".journey files")
    _server_flags(deploy)
    deploy.add_argument("--id", help="the journey id (default: a slug of the journey's name)")
    deploy.add_argument("--draft", action="store_true", help="a new journey starts as a draft")
    deploy.add_argument("--skip-tests", action="store_true", help="deploy without running the journey tests")
    deploy.set_defaults(func=exiting(cmd_deploy))
    pull = subparsers.add_parser("pull", help="write a deployed journey's source to a file or standard output")
    pull.add_argument("journey_id", metavar="JOURNEY_ID")
    _server_flags(pull)
    pull.add_argument("-o", "--output", help="the file to write (default: standard output)")
    pull.add_argument("--version", type=int, help="an older version (default: the current one)")
    pull.set_defaults(func=cmd_pull)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="journeys")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
