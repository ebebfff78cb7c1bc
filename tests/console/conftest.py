"""Fixtures for the console tests.

``live`` is the real service as an operator's browser meets it: a Temporal
dev server, a worker running the journey interpreter (channels in outbox
mode), SQLite in a temporary directory, and the API app served by uvicorn on
127.0.0.1 at a free port — all on one event loop in a background thread, so
the (synchronous) Playwright tests drive it like any HTTP server.

``browser`` is Debian's chromium driven by Playwright's Python package
(``scripts/ensure-chromium`` installs it; ``playwright install`` is never
run). Without the browser the tests FAIL: a console nobody saw work in a
browser is not tested.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from api.settings import ApiSettings
from engine.channels.config import ChannelsConfig
from engine.store import Store

ADMIN, OPERATOR, VIEWER, WRITE = "k-admin-console", "k-operator-console", "k-viewer-console", "wk-console"
KEYS = {ADMIN: "admin", OPERATOR: "operator", VIEWER: "viewer"}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]


def make_settings(tmp: Path, **extra: Any) -> ApiSettings:
    return ApiSettings(
        database_url=f"sqlite:///{tmp / 'journeys.db'}",
        task_queue=f"console-{uuid.uuid4().hex[:8]}",
        api_keys=KEYS,
        write_keys=[WRITE],
        channels=ChannelsConfig(mode="outbox"),
        cap_per_day=None,
        cap_per_week=None,
        log_level="WARNING",
        **extra,
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class LiveStack:
    """The whole service in a thread; ``url`` is where the browser goes."""

    tmp: Path
    # more settings, given the server's own address (e.g. tracked links' base)
    settings_for: Callable[[str], dict[str, Any]] | None = None
    url: str = ""
    settings: ApiSettings | None = None
    activities: Any = None  # the worker's (its providers: the outbox a test reads)
    store: Store | None = None
    error: BaseException | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    def start(self, timeout: float = 180.0) -> None:
        self._thread = threading.Thread(target=self._run, name="console-live-stack", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the live stack did not come up")
        if self.error is not None:
            raise RuntimeError("the live stack failed to start") from self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(60)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        from engine.temporal import start_dev_server
        from runtime.worker import build_activities, build_worker, replay_failed_sends

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        env = await start_dev_server()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            self.settings = make_settings(self.tmp, **(self.settings_for(self.url) if self.settings_for else {}))
            self.store = Store(self.settings.database_url)
            self.store.migrate()
            self.activities = activities = build_activities(self.settings, self.store)
            app = create_app(self.settings, client=env.client, store=self.store)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
            async with build_worker(env.client, activities.all(), self.settings.task_queue):
                # as the real worker does: failed sends an operator replays go out
                replayer = asyncio.create_task(replay_failed_sends(activities, self._stop, 0.2))
                serving = asyncio.create_task(server.serve(sockets=[sock]))
                for _ in range(600):
                    if server.started or serving.done():
                        break
                    await asyncio.sleep(0.05)
                if not server.started:
                    serving.result()  # raises what went wrong
                    raise RuntimeError("uvicorn did not start")
                self._ready.set()
                await self._stop.wait()
                server.should_exit = True
                await serving
                await replayer
            self.store.dispose()
        finally:
            await env.shutdown()


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    stack = LiveStack(tmp_path_factory.mktemp("console-live"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def chromium_path() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        pytest.fail(
            "Debian's chromium is not installed: run scripts/ensure-chromium (make test does) — "
            "the console's browser tests need a real browser and do not skip",
            pytrace=False,
        )
    return found


# package, not session: sync Playwright keeps an event loop running in the main
# thread while it is open, which breaks every later pytest-asyncio test.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - dev extra missing
        pytest.fail("the playwright package is missing: pip install -e '.[dev]'", pytrace=False)
    executable = chromium_path()
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.console_errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
