"""Watch: code a folder again whenever a transcript or the codebook changes, in one process.

Why: a person correcting transcripts one by one should see the new coding in seconds. Each
fresh ``qcode run`` pays Python's imports, Prefect's temporary server and the loading of spaCy,
the anonymity check's analyzer and the encoder before it does any work; for one edited
transcript that is most of the run. A watching process pays them once and keeps them: a
change then costs only the changed transcript's own work (the caches and the kept per-transcript
results do the rest) and writing the run folder.

Plain functions over plain data: what to watch (``watched_files``), a snapshot of it
(``snapshot``), waiting for it to change and settle (``Notifications.wait``, woken by the
system's file notifications, or ``wait_for_change``, polling), and the loop
(``watch``), which calls back into whatever runs the coding; the CLI wires them.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import QcodeError
from pipeline.ingest import find_transcripts
from pipeline.privacy import names_file
from pipeline.server import stop_on_signals

Snapshot = dict[str, tuple[int, int]]  # path -> (modification time in ns, size in bytes)


def watched_files(
    transcripts_dir: Path,
    codebook: Path,
    privacy_names: Path | None = None,
    classifier: Path | None = None,
) -> list[Path]:
    """Every file a run's outputs depend on that a person edits: the transcripts, the
    codebook, the anonymity check's names file and a trained coder's own files."""
    try:
        files = [*find_transcripts(transcripts_dir), codebook]
    except QcodeError:  # the folder is gone (moved, or being replaced): watch the rest
        files = [codebook]
    names = names_file(privacy_names, transcripts_dir)
    if names is not None:
        files.append(names)
    if classifier is not None and classifier.is_dir():
        files += sorted(p for p in classifier.iterdir() if p.is_file())
    return files


def snapshot(files: Iterable[Path]) -> Snapshot:
    """Size and modification time of each file (a file gone between listing and reading is
    left out: its absence is the change)."""
    seen: Snapshot = {}
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        seen[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return seen


def changed_names(before: Snapshot, after: Snapshot) -> list[str]:
    """File names added, removed or changed between two snapshots."""
    paths = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    return sorted(Path(p).name for p in paths)


def wait_for_change(
    take: Callable[[], Snapshot],
    before: Snapshot,
    poll_s: float = 0.25,
    settle_s: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> Snapshot:
    """Block until ``take()`` differs from ``before``, then until it stays the same for
    ``settle_s`` (an editor or a copy may write a file in several steps); return it.

    The fallback where the system's file notifications are not available
    (``Notifications.wait``): a change is seen 0.1-0.5 s after the save."""
    now = before
    while now == before:
        sleep(poll_s)
        now = take()
    while True:
        sleep(settle_s)
        again = take()
        if again == now:
            return now
        now = again


class Notifications:
    """The system's file notifications (inotify, FSEvents, ReadDirectoryChangesW, through
    ``watchfiles``) on the watched files' folders, kept from one wait to the next.

    Why kept: a save made while a run codes, or in the moment between a wait's first look
    and its watch starting, is still delivered to the next wait (the notifications gather
    while nobody waits), not noticed only at the next check ``check_s`` later."""

    def __init__(self, quiet_ms: int = 100, check_s: float = 2.0):
        self.quiet_ms, self.check_s = quiet_ms, check_s
        self._folders: list[str] = []
        self._events: Generator[set, None, None] | None = None

    def wait(self, take: Callable[[], Snapshot], before: Snapshot) -> Snapshot:
        """Like ``wait_for_change``, woken by notifications instead of polling: a save is
        coded about 0.1 s after it, not 0.25-0.5 s, and an idle watch costs nothing. A burst
        of writes counts as one change once the folders are quiet for ``quiet_ms``; the
        snapshot still decides that something changed (an event for a file nobody watches,
        or a save that changed nothing, wakes it and it waits again), and it is looked at
        every ``check_s`` too, so a missed notification costs seconds, not an edit. Polls
        instead where notifications cannot be set up (no watched folder left, a network file
        system, the system's limit on watches reached)."""
        now = take()
        if now != before:  # changed while the last run was coding: settle, then code it
            return wait_for_change(take, before, poll_s=0)
        folders = sorted({str(Path(p).parent) for p in before if Path(p).parent.is_dir()})
        if not folders:
            return wait_for_change(take, before)
        try:
            if self._events is None or folders != self._folders:
                self.close()
                import watchfiles

                self._events = watchfiles.watch(
                    *folders,
                    recursive=False,
                    step=self.quiet_ms,
                    rust_timeout=int(self.check_s * 1000),
                    yield_on_timeout=True,
                )
                self._folders = folders
            for _ in self._events:
                now = take()
                if now != before:
                    return now
        except (ImportError, OSError, RuntimeError, ValueError):
            self.close()  # notifications unavailable here, or a watched folder went: poll
        return wait_for_change(take, before)

    def close(self) -> None:
        """Stop the notifications (they are started again by the next wait)."""
        if self._events is not None:
            events, self._events = self._events, None
            events.close()


def watch(
    code: Callable[[], None],
    take: Callable[[], Snapshot],
    say: Callable[[str], None],
    warn: Callable[[str], None],
    ready: Callable[[], None] | None = None,
) -> None:
    """Code once, then again after every change, until interrupted (Ctrl-C). A bad file is
    reported like a run's error and watching goes on: the next save may fix it. ``ready`` runs
    once, after the first run (the CLI loads the models there, so the first edit does not wait
    for them)."""
    before = take()
    notifications = Notifications()
    with stop_on_signals():
        try:
            _code_once(code, warn)
            if ready is not None:
                ready()
            # What is loaded by now (libraries, models, the kept results) lives as long as the
            # process: keep the garbage collector's full sweeps, which each edit's many small
            # objects set off, from walking it again every time.
            gc.collect()
            gc.freeze()
            while True:
                say("Watching for changes to the transcripts and codebook (Ctrl-C stops) ...")
                after = notifications.wait(take, before)
                say(f"Changed: {', '.join(changed_names(before, after))}. Coding again ...")
                before = after
                clock = time.perf_counter()
                with collector_paused():
                    coded = _code_once(code, warn)
                if coded:
                    say(f"Coded again in {time.perf_counter() - clock:.1f} s.")
                gc.collect()  # while the person reads the result, not while they wait
        except KeyboardInterrupt:
            say("Stopped watching.")
        finally:
            notifications.close()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection during an edit's run; the watch loop collects after it.

    Why: a run at 7,000 pages makes millions of short-lived objects, and each full sweep they
    set off walks everything the process holds (about 0.1 s of an edit in one list of
    per-unit values alone). Memory is still freed as usual by reference counting."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _code_once(code: Callable[[], None], warn: Callable[[str], None]) -> bool:
    try:
        code()
    except QcodeError as error:
        warn(f"Error: {error.message}")
        return False
    return True
