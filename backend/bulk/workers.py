"""Where per-file tasks run: headless Blender worker processes on this machine, or Ray tasks.

Both run the same task (:func:`blender_addon.headless.bulk.process_file`) and hand its events to
``on_event(event)`` and its final result to the caller. A worker that crashes (Blender can
segfault on a damaged file) is reported as a failure of that file and replaced; the run goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from backend.errors import Asset2VecError

Event = dict[str, Any]
OnEvent = Callable[[Event], None]
WORKER_MODULE = "blender_addon.headless.bulk_worker"


class WorkerError(Asset2VecError):
    """Workers cannot be started; the message says what to do."""


class WorkerProcess:
    """One ``python -m blender_addon.headless.bulk_worker`` subprocess (bpy imported once, many files)."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log if self._log else subprocess.DEVNULL, text=True, encoding="utf-8", env=env, cwd=root,
        )
        ready = self._read()
        if ready is None or ready.get("ev") != "ready":
            code = self.proc.wait()
            raise WorkerError(f"a Blender worker process could not start (exit code {code}); see "
                              f"{self.log_path or 'its log'}; check that `{sys.executable} -c 'import bpy'` works")

    def _read(self) -> Event | None:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return None
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return {"ev": "noise", "line": line}

    def request(self, request: dict[str, Any], on_event: OnEvent) -> Event:
        """Send one request; pass events to ``on_event``; return the final result (a crash gives a failure)."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._crashed()
        while True:
            event = self._read()
            if event is None:
                return self._crashed()
            if event.get("ev") == "result":
                return event
            if event.get("ev") != "noise":
                on_event(event)

    def _crashed(self) -> Event:
        assert self.proc is not None
        code = self.proc.wait()
        self.proc = None
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return {"ev": "result", "status": "failed", "crashed": True,
                "error": f"the Blender worker crashed on this file ({how}); the file was not changed"}

    def kill(self) -> None:
        """Stop at once, mid-request too (a cancelled or failed driver)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


class ProcessPool:
    """``n`` worker processes fed from one task list by ``n`` driver threads."""

    def __init__(self, n: int, log_dir: Path | None = None) -> None:
        self.workers = [WorkerProcess(log_dir / f"worker-{i}.log" if log_dir else None) for i in range(max(1, n))]

    def run(self, requests: list[dict[str, Any]], on_event: OnEvent, on_result: Callable[[dict, Event], None],
            stop: threading.Event) -> None:
        """Run every request; ``on_result(request, result)`` is called from the worker's driver thread."""
        lock = threading.Lock()
        pending = list(reversed(requests))
        errors: list[BaseException] = []

        def drive(worker: WorkerProcess) -> None:
            try:
                while not stop.is_set():
                    with lock:
                        if not pending:
                            return
                        req = pending.pop()
                    on_result(req, worker.request(req, on_event))
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread below
                errors.append(e)
                stop.set()
            finally:
                worker.stop()

        threads = [threading.Thread(target=drive, args=(w,), daemon=True, name=f"bulk-worker-{i}")
                   for i, w in enumerate(self.workers)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            stop.set()
            raise
        if errors:
            raise errors[0]

    def request_one(self, request: dict[str, Any], on_event: OnEvent) -> Event:
        """Run a single request on the first worker (used for the import step); the worker stays up."""
        return self.workers[0].request(request, on_event)

    def close(self) -> None:
        for w in self.workers:
            w.stop()


#: Test hook only: a Ray capture task that can delete this marker file SIGKILLs its own worker after its first asset
#: (a Blender crash mid-capture, once per marker).
KILL_ONCE_ENV = "ASSET2VEC_TEST_KILL_CAPTURE_ONCE"


def _kill_once_marker(done: int, total: int) -> None:
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        os.unlink(marker)  # only one task wins the marker
    except OSError:
        return
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _ray_task(request: dict[str, Any]) -> tuple[list[Event], Event]:
    """Body of a Ray task: the same per-file task, events collected and returned with the result."""
    events: list[Event] = []
    if request["op"] == "capture":  # one .blend of an index (backend.lifecycle.ray_capture)
        from pathlib import Path

        from blender_addon.headless.capture_library import capture_archives

        result = capture_archives(Path(request["src"]), Path(request["path"]), size=int(request["size"]),
                                  samples=int(request["samples"]), device=str(request["device"]),
                                  known=request["known"], on_asset=_kill_once_marker)
        return events, {"ev": "result", **result}
    if request["op"] == "features":  # appearance features of bundles of an index (backend.lifecycle.ray_features)
        from backend.features.remote import features_task

        return events, {"ev": "result", **features_task(request)}
    from blender_addon.headless import bulk

    if request["op"] == "import":
        return events, {"ev": "result", **bulk.import_loose_models(request["root"], request["models"])}
    result = bulk.process_file(request["path"], request["options"], request.get("known"), emit=events.append)
    return events, {"ev": "result", **result}


class RayPool:
    """The same tasks as Ray tasks: a local Ray instance or a cluster (``ray start`` on each machine).

    On a cluster every node must see the library at the same path (a shared drive) and reach
    the backend URL. ``address=None`` starts a local Ray with ``num_cpus=n``.
    """

    def __init__(self, n: int, address: str | None = None, max_retries: int = 0) -> None:
        try:
            import ray
        except ImportError:
            raise WorkerError("--ray needs the `ray` package: install it with `pip install ray` (into the same "
                              "environment as asset2vec), or run without --ray") from None
        self.ray = ray
        self._started = False
        if not ray.is_initialized():
            root = str(Path(__file__).resolve().parents[2])
            runtime_env = {"env_vars": {"PYTHONPATH": root}}
            kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": max(1, n)}
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports sent from a studio machine
            ray.init(**kwargs, runtime_env=runtime_env, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self._started = True
        # max_retries: Ray runs a task again when its worker process died (a Blender crash, a lost node).
        self.remote = ray.remote(max_retries=max_retries, num_cpus=1)(_ray_task)

    def run(self, requests: list[dict[str, Any]], on_event: OnEvent, on_result: Callable[[dict, Event], None],
            stop: threading.Event) -> None:
        ray = self.ray
        refs = {self.remote.remote(req): req for req in requests}
        try:
            while refs and not stop.is_set():
                done, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                for ref in done:
                    req = refs.pop(ref)
                    try:
                        events, result = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:  # a Python error in the task (e.g. no bpy there)
                        events, result = [], {"ev": "result", "status": "failed",
                                              "error": f"the Ray task failed on this file "
                                                       f"({(str(e.cause or e).strip().splitlines() or ['?'])[-1][:300]})"}
                    except Exception as e:  # noqa: BLE001 - a crashed Ray worker: report the file, go on
                        events, result = [], {"ev": "result", "status": "failed", "crashed": True,
                                              "error": f"the Ray worker failed on this file ({type(e).__name__}); "
                                                       f"the file was not changed"}
                    for ev in events:
                        on_event(ev)
                    on_result(req, result)
        finally:
            for ref in refs:  # stopped early (or on_result raised): nothing left running on the cluster
                ray.cancel(ref, force=True)

    def request_one(self, request: dict[str, Any], on_event: OnEvent) -> Event:
        events, result = self.ray.get(self.remote.remote(request))
        for ev in events:
            on_event(ev)
        return result

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
