"""Real Celery worker processes, started the way an operator starts them (README, "Build hosts")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO_ROOT


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM to the main process only, like `systemctl stop` with KillMode=mixed."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGTERM)

    def kill_everything(self) -> None:
        """SIGKILL to the worker and its pool processes: a lost host."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


def worker_command(queues: str, name: str, beat_schedule: Path | None = None) -> list[str]:
    beat = ["--beat", "--schedule", str(beat_schedule)] if beat_schedule else []
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "-Q",
        queues,
        "--concurrency",
        "1",
        "-P",
        "prefork",
        "--prefetch-multiplier",
        "1",
        "--hostname",
        f"{name}@%h",
        "--loglevel",
        "INFO",
        "--without-mingle",
        "--without-gossip",
        *beat,
    ]


@contextmanager
def run_worker(
    env: dict[str, str],
    log_dir: Path,
    *,
    queues: str,
    name: str = "build",
    beat: bool = False,
) -> Iterator[WorkerProcess]:
    """Starts a worker with `env` on top of this process's environment (and the periodic jobs
    with `beat`) and waits until it is ready; kills it on exit if it is still running."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"worker-{name}.log"
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            worker_command(queues, name, log_dir / f"beat-{name}" if beat else None),
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + 60
        while "ready." not in worker.output():
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{worker.output()[-4000:]}")
            time.sleep(0.1)
        yield worker
    finally:
        if worker.alive():
            worker.kill_everything()
        # Captured by pytest and shown with a failing test.
        print(f"--- {log_path.name} (last lines) ---\n{worker.output()[-6000:]}")
