"""Runs a stand-in job as a local subprocess: SCHEDULING -> RUNNING -> COMPLETED / ERROR, with timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from kotone_pipeline_tests.hf_standin.hub import Hub
from kotone_pipeline_tests.hf_standin.model import REPO_ROOT, TERMINAL, JobRecord, _iso


class JobRunner:
    """What a Jobs machine does with one job; ``uv run <url>`` runs the script with this interpreter."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _log(self, job: JobRecord, line: str) -> None:
        with self.hub._lock:
            job.logs.append((_iso(self.hub.now()), line))

    def run(self, job: JobRecord) -> None:
        while self.hub.hold_scheduling and not job.cancel_requested:
            time.sleep(0.02)
        with self.hub._lock:
            if job.cancel_requested:
                return
            job.stage = "RUNNING"
            job.started = self.hub.now()
        self._log(job, f"===== Job started at {_iso(self.hub.now())} =====")
        job_dir = self.hub.workdir / "jobs" / job.id
        job_dir.mkdir(parents=True, exist_ok=True)
        env = self._job_env(job, job_dir)
        try:
            argv = self._argv(job, job_dir, env)
        except RuntimeError as exc:
            self._log(job, f"error: {exc}")
            self._finish(job, 2)
            return
        try:
            process = subprocess.Popen(
                argv,
                cwd=job_dir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        except OSError as exc:
            self._log(job, f"error: cannot start {argv[0]}: {exc}")
            self._finish(job, 127)
            return
        with self.hub._lock:
            job.process = process
            if job.cancel_requested:
                process.kill()
        timeout_s = float(job.spec.get("timeoutSeconds") or 1800)
        watchdog = threading.Thread(target=self._watch_timeout, args=(job, process, timeout_s), daemon=True)
        watchdog.start()
        assert process.stdout is not None
        for line in process.stdout:
            self._log(job, line.rstrip("\n"))
        self._finish(job, process.wait())

    def _watch_timeout(self, job: JobRecord, process: subprocess.Popen[str], timeout_s: float) -> None:
        while process.poll() is None:
            if job.started is not None and self.hub.now() - job.started > timeout_s:
                job.message = f"Job timeout after {int(timeout_s)}s"
                process.kill()
                return
            time.sleep(0.05)

    def _finish(self, job: JobRecord, exit_code: int) -> None:
        with self.hub._lock:
            job.exit_code = exit_code
            if job.stage in TERMINAL:  # canceled meanwhile
                return
            job.finished = self.hub.now()
            if exit_code == 0:
                job.stage = "COMPLETED"
            else:
                job.stage = "ERROR"
                job.message = job.message or f"Job failed with exit code: {exit_code}"

    def _job_env(self, job: JobRecord, job_dir: Path) -> dict[str, str]:
        """A clean machine: the job's env and secrets, plus what a uv image would have."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(job_dir),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "HF_HOME": str(job_dir / ".hf"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "JOB_ID": job.id,
            **self.hub.machine_env,
        }
        env.update({k: str(v) for k, v in (job.spec.get("environment") or {}).items()})
        env.update({k: str(v) for k, v in (job.spec.get("secrets") or {}).items()})
        return env

    def _argv(self, job: JobRecord, job_dir: Path, env: dict[str, str]) -> list[str]:
        """``uv run <url> args`` runs the downloaded script with this interpreter (deps preinstalled here)."""
        command = [str(c) for c in job.spec["command"]] + [str(a) for a in job.spec.get("arguments") or []]
        if command[:2] == ["uv", "run"]:
            rest = command[2:]
            while rest and rest[0].startswith("--"):
                flag = rest.pop(0)
                if flag in ("--with", "--python", "--index-url", "--extra-index-url") and rest:
                    rest.pop(0)
            if not rest:
                raise RuntimeError("uv run: no script given")
            script, args = rest[0], rest[1:]
            if script.startswith(("http://", "https://")):
                script = str(self._fetch_script(script, job_dir, env.get("HF_TOKEN")))
            return [sys.executable, script, *args]
        if command[0] in ("python", "python3"):
            return [sys.executable, *command[1:]]
        return command

    def _fetch_script(self, url: str, job_dir: Path, token: str | None) -> Path:
        # uv authenticates Hub URLs with HF_TOKEN (astral-sh/uv#14797); do the same, over HTTP, to ourselves.
        if not url.startswith(self.hub.url):
            raise RuntimeError(f"uv run: cannot reach {url} (the stand-in has no network)")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"uv run: failed to fetch script: HTTP {exc.code}") from None
        target = job_dir / (Path(urlsplit(url).path).name or "script.py")
        target.write_bytes(data)
        return target
