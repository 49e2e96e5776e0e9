"""`skyfed worker`: task workers for a zone, without its API, sharing its database."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from skyfed.logs import configure_logging
from skyfed.settings import Settings


def worker(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="The zone's zone.toml (the same file).")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=1024, help="Tasks run at once (default: the zone's `workers`)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve /metrics (no token) on this port of the zone's metrics_host.",
        ),
    ] = None,
) -> None:
    """Run more task workers for a zone: any number may share its database with its API.

    The zone's API process may run none itself (`workers = 0`) and leave all tasks
    to processes like this one.
    """
    try:
        settings = Settings.load(config)
        # The zone's metrics_port is its API process's: a worker has its own or none.
        settings = settings.model_copy(
            update={"workers": concurrency or settings.workers or 32, "metrics_port": metrics_port}
        )
    except (OSError, ValueError, ValidationError) as exc:
        typer.echo(f"bad settings: {exc}", err=True)
        raise typer.Exit(2) from exc
    log_file = settings.log_file
    if log_file is not None:
        if not log_file.is_absolute():
            log_file = settings.state_dir / log_file
        log_file = log_file.with_name(f"{log_file.stem}.worker{log_file.suffix}")
    configure_logging(f"{settings.name}:worker", settings.log_level, log_file)
    asyncio.run(_run(settings))


async def _run(settings: Settings) -> None:
    from skyfed.app import build_zone, running  # only here: see skyfed serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(build_zone(settings), api=False):
        await stop.wait()
