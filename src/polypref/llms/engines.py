"""One loaded vLLM engine per process, lent to every transport that opens it with the same engine settings.

Loading a model is the slowest step of a vLLM run (tens of seconds on a GPU, more on a CPU), and one process often
opens the same engine more than once: a build's fidelity check and then its judge, a notebook's second build, a
test session. Each of those gets the engine already loaded. Opening other settings (a generator's model, then the
judge's) shuts the idle engine down first; an engine still lent out is never shut down under its borrower: the
other is loaded beside it, unkept, and shut down when closed. An engine whose processes died while it was idle
(Ctrl-C reached them, the OOM killer) is not lent again. The kept engine holds its GPU memory until the process
exits or ``shut_down_kept`` is called (a notebook that goes on to train on the dataset calls it first).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("polypref.llms.vllm")


class Lease:
    """An engine lent to one transport: ``engine`` to call under ``lock`` (one engine call at a time, whoever
    holds it), ``release`` when done, ``discard`` when the engine died under it (the next opening loads anew)."""

    def __init__(self, key: str, engine: Any, kept: bool) -> None:
        self.key, self.engine, self.kept = key, engine, kept
        self.lock = threading.Lock()
        self.borrowers = 1

    def release(self) -> None:
        with _guard:
            self.borrowers -= 1
            if self.kept or self.borrowers > 0:  # kept for the next opening, or still in another's hands
                return
        shut_down(self.engine)

    def discard(self) -> None:
        """The engine is dead, or holds requests an interrupted call left: nobody may be lent it again."""
        global _kept
        with _guard:
            if _kept is self:
                _kept = None
            self.kept = False


_guard = threading.Lock()
_kept: Lease | None = None


def settings_key(model: str, settings: dict[str, Any]) -> str:
    """Engines with equal keys are interchangeable: the model (a local folder by its real path, so another working
    directory's same relative path is another model) and every argument it was loaded with. Weights overwritten in
    place are not seen: call ``shut_down_kept`` after fine-tuning into the same folder."""
    where = os.path.realpath(model) if os.path.isdir(model) else model
    return json.dumps({"model": where, **settings}, sort_keys=True, default=str)


def _dead(engine: Any) -> bool:
    """vLLM's engine-core monitor marks an engine whose processes exited; any other engine counts as alive."""
    core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
    return bool(getattr(getattr(core, "resources", None), "engine_dead", False))


def lease(key: str, load: Callable[[], Any]) -> Lease:
    """The engine ``key`` names: the one kept, if it has those settings, else ``load()``-ed now (after shutting an
    idle kept engine of other settings down, so that two never hold the GPU at once)."""
    global _kept
    with _guard:
        kept = _kept
        if kept is not None and kept.borrowers == 0 and _dead(kept.engine):
            _kept = kept = None  # its processes died while idle: nothing to shut down, nobody to lend it to
        if kept is not None and kept.key == key:
            kept.borrowers += 1
            return kept
        if kept is not None and kept.borrowers == 0:
            _kept = None
            log.info("vLLM: shutting down the idle engine of other settings before loading %s", key)
        else:
            kept = None  # nothing idle to replace
    if kept is not None:
        shut_down(kept.engine)
    engine = load()  # outside the guard: minutes, during which other leases are released freely
    with _guard:
        keep = _kept is None
        fresh = Lease(key, engine, kept=keep)
        if keep:
            _kept = fresh
    return fresh


def shut_down(engine: Any) -> None:
    """Stop an engine's processes now rather than at garbage collection (vLLM's engine core is a child process).
    vLLM 0.32's V1 engine has no shutdown of its own: its engine core client has."""
    llm_engine = getattr(engine, "llm_engine", None)
    for part in (llm_engine, getattr(llm_engine, "engine_core", None)):
        shutdown = getattr(part, "shutdown", None)
        if callable(shutdown):
            shutdown()
            return


@atexit.register
def shut_down_kept() -> None:
    """Shut the kept engine down now (at the latest, at exit): a session that is ending while its logging streams
    are still open (a test session) calls it itself."""
    global _kept
    kept, _kept = _kept, None
    if kept is not None:
        shut_down(kept.engine)
