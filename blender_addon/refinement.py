"""The backend refining an embed's instant answer: wait for it in the background, write it when it comes.

A backend whose model has an instant encoder answers an embed at once (``code_source: "encoder"``) and refines
the code by inversion in a background job (``refine_job``). The Embed is then done (the asset already has tags
and suggestions), and a :class:`Refinement` waits for the refined answer in its worker thread and writes it into
the asset when it comes (main thread, from the session's timer); the panel shows "refining" meanwhile.
"""

from __future__ import annotations

from typing import Any

from . import session as session_mod
from .embed_target import Options, Target, save_file, write_answers
from .protocol import api
from .protocol import client as remote
from .tasks import CANCELLED, DONE, FAILED, BackgroundTask

#: Seconds between two status requests while waiting for a refinement.
REFINE_POLL = 0.5


class Refinement(BackgroundTask):
    """The backend refining an embed's instant-encoder code(s); the refined answer replaces the instant one.

    The worker thread (no bpy) waits for each ``refine_job`` and fetches the new neighbours' thumbnails;
    :meth:`complete` (main thread) then writes the refined result into the asset like the first answer was
    written (tags the artist accepted or rejected meanwhile stay as they are). Cancel only stops waiting: the
    backend's catalogue gets the refined code whether or not this Blender is still there to write it.
    """

    title = "the refinement"
    cancel_on_timeout = False

    def __init__(self, session: session_mod.Session, target: Target, options: Options,
                 results: dict[int, api.EmbedResult], plan: list[dict[str, Any] | None], backed_up: bool = False) -> None:
        super().__init__(f"refining the code of {target.name!r} on the backend")
        self.session, self.target, self.options, self.plan = session, target, options, plan
        #: Whether the Embed's own save made the .blend1 (the pre-embed file): the refinement's save then keeps it.
        self.backed_up = backed_up
        self.results = dict(results)  # plan index -> answer; refined ones are replaced when they come
        self.jobs = {i: r.refine_job for i, r in results.items() if r.refine_job}
        self.refined = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return self.target.key

    # -- worker thread ------------------------------------------------------------------------------

    def work(self) -> None:
        opts = self.options
        client = remote.Client(opts.url, opts.token, timeout=opts.timeout)
        for i, job in self.jobs.items():
            result = self._wait(client, job)
            if result is None:
                return
            if isinstance(result, api.EmbedResult):  # else dropped: nothing to refine (e.g. the model was switched)
                self.results[i] = result
                self.refined += 1
        names = [n.name for r in self.results.values() for n in r.all_neighbours()]
        self.session.thumbnails.fetch(client, names, self.cancel)

    def _wait(self, client: remote.Client, job: str) -> api.EmbedResult | api.RefineDropped | None:
        """The refine job's result; None when we stopped waiting. Never cancels the job."""
        while not self.cancel.wait(REFINE_POLL):
            status = client.job(job)
            if status.status == api.DONE:
                return client.embed_result(job)
            if status.status == api.FAILED:
                raise remote.BackendError(status.error or status.message or "the refinement failed")
            if status.status == api.CANCELLED:
                raise remote.BackendError("the refinement was cancelled on the backend")
        return None

    # -- main thread --------------------------------------------------------------------------------

    def complete(self) -> None:
        name = self.target.name
        if self.cancel.is_set():
            self.finish(CANCELLED, f"stopped waiting for the refinement of {name!r}; the instant answer stays")
        elif self.error is not None:
            self.finish(FAILED, f"the refinement of {name!r} did not come back ({self.error}); the instant answer "
                                "stays")
        elif not self.refined:
            self.finish(DONE, f"{name!r}: nothing to refine any more (the backend switched models or the asset was "
                              "embedded again); the instant answer stays")
        else:
            self._apply()

    def _apply(self) -> None:
        obj = self.target.resolve()
        if obj is None:
            self.finish(CANCELLED, f"{self.target.name!r} was deleted or renamed, or another file was opened: the "
                                   "refined answer was not written")
            return
        report = write_answers(obj, self.results, self.plan, self.options, f"Asset2Vec: refined {obj.name}")
        psnr = [r.psnr for r in self.results.values() if r.psnr is not None]
        message = f"refined {obj.name!r}" + (f" ({sum(psnr) / len(psnr):.1f} dB)" if psnr else "")
        if report.added:
            message += f"; added tag(s) {', '.join(report.added)}"
        if report.removed:
            # Each with why: "office: p 0.02 < its threshold 0.90" (the reason, without what the line already says).
            said = " (added by an earlier answer)"
            why = "; ".join(f"{t}: {report.reasons[t].removeprefix('removed: ').removesuffix(said)}"
                            for t in report.removed if t in report.reasons)
            message += f"; removed {', '.join(report.removed)} after refinement" + (f" ({why})" if why else "")
        if self.options.save_after:
            # The Embed's own save made the .blend1 the pre-embed file: keep that one as the backup (not the instant
            # version); if that save did not happen, this save makes the backup as usual.
            message += "; " + save_file(backup=not self.backed_up)
        self.finish(DONE, message)

    def failure_message(self, e: Exception) -> str:
        return f"could not write the refined answer ({type(e).__name__}: {e}); the instant answer stays"

    def finished(self) -> None:
        # Only the status of the latest action is shown; an embed running now keeps its own line.
        if not self.session.running("embed"):
            self.session.report("embed", self)


def refinement_of(id_: Any) -> Refinement | None:
    """The refinement still running for asset ``id_`` (object or collection), or None."""
    if id_ is None:
        return None
    r = session_mod.get().refinements.get(Target.of(id_).key)
    return r if isinstance(r, Refinement) and r.running else None


def pump_refinements(timeout: float = 120.0) -> None:
    """Drive the waiting refinements until they are written (what the timer does; for tests and headless use)."""
    session_mod.get().pump_refinements(timeout)
