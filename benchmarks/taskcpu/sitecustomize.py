"""Where a torrentfs daemon's CPU goes, by trio task, measured as CPU time
(``time.thread_time``), not by sampling: right on a machine whose cores are shared by
dozens of daemons (a ``scripts/cluster`` run), where a sampling profiler sees a
preempted process as busy wherever it stopped.

Put this folder first on PYTHONPATH and set TFS_TCPU=1; every ``torrentfs mount``
process then counts, per task role (the task's outermost function and what it last
waited on), the CPU time of its steps, and writes ``$TFS_TCPU_DIR/out.<pid>.json``
(default /tmp/tcpu) every 2 s. ``TFS_FN=module:Class.method,...`` also times those
methods (inclusive; a swarm's ``on_message`` per message type). Then
``python -m benchmarks.taskcpu.summary`` adds them up per node:

    TFS_TCPU=1 PYTHONPATH=benchmarks/taskcpu:. scripts/cluster --nodes 8 ...
    python -m benchmarks.taskcpu.summary

What is not in a task step is the run loop's (trio's scheduler, epoll) or other
threads' (hashing, disk writes). The hooks add about a fifth to the daemons' CPU:
compare shares, not totals, with an uninstrumented run. docs/benchmarks.md, session 11.
"""

import os

if (b"mount" in open("/proc/self/cmdline", "rb").read().split(b"\0")
        and os.environ.get("TFS_TCPU")):
    import collections
    import importlib
    import json
    import sys
    import threading
    import time

    import trio
    from trio.abc import Instrument

    OUT = os.environ.get("TFS_TCPU_DIR", "/tmp/tcpu")
    WRAPPERS = ("pump", "_guarded", "PeerSession.run")  # by the end of their names
    ROLES = ("PeerSession._receiver", "PeerSession._sender")
    clock = time.thread_time_ns
    cpu: collections.Counter = collections.Counter()
    steps: collections.Counter = collections.Counter()
    fcpu: collections.Counter = collections.Counter()
    fcalls: collections.Counter = collections.Counter()
    main_thread: list[int] = []

    def role(task) -> str:
        names = []
        c = task.coro
        while c is not None and len(names) < 16:
            code = getattr(c, "cr_code", None) or getattr(c, "gi_code", None)
            if code is None:
                break
            names.append(code.co_qualname)
            c = getattr(c, "cr_await", None) or getattr(c, "gi_yieldfrom", None)
        for n in names:  # a session's two tasks, under whatever started them
            if n.startswith(ROLES):
                return n
        names = [n for n in names if not n.endswith(WRAPPERS)] or ["?"]
        return names[0] + (" | " + names[-1] if len(names) > 1 else "")

    class TaskCPU(Instrument):
        def before_run(self) -> None:
            main_thread.append(threading.get_ident())

        def before_task_step(self, task) -> None:
            self.t0 = clock()
            self.key = role(task)

        def after_task_step(self, task) -> None:
            cpu[self.key] += clock() - self.t0
            steps[self.key] += 1

    def timed(cls, name: str, by_message: bool) -> None:
        f = getattr(cls, name)
        label = f"{cls.__name__}.{name}"

        def wrapper(*args, **kwargs):
            t0 = clock()
            try:
                return f(*args, **kwargs)
            finally:
                key = f"{label}[{type(args[2]).__name__}]" if by_message else label
                fcpu[key] += clock() - t0
                fcalls[key] += 1
        setattr(cls, name, wrapper)

    for spec in filter(None, os.environ.get("TFS_FN", "").split(",")):
        module, _, qualname = spec.partition(":")
        cls_name, _, method = qualname.rpartition(".")
        try:
            timed(getattr(importlib.import_module(module), cls_name), method,
                  method == "on_message")
        except Exception as e:
            print(f"taskcpu: cannot time {spec}: {e}", file=sys.stderr)

    run = trio.run

    def instrumented_run(*args, **kwargs):
        kwargs["instruments"] = [*kwargs.get("instruments", ()), TaskCPU()]
        return run(*args, **kwargs)
    trio.run = instrumented_run

    def dump() -> None:
        while True:
            time.sleep(2)
            t = os.times()
            doc = {"proc": t.user + t.system, "cpu": cpu, "steps": steps,
                   "fcpu": fcpu, "fcalls": fcalls}
            if main_thread:
                doc["main"] = time.clock_gettime(time.pthread_getcpuclockid(main_thread[0]))
            try:
                os.makedirs(OUT, exist_ok=True)
                with open(f"{OUT}/out.{os.getpid()}.json", "w") as f:
                    json.dump(doc, f)
            except OSError:
                pass

    def start() -> None:
        threading.Thread(target=dump, daemon=True).start()
    start()
    os.register_at_fork(after_in_child=start)  # the daemon is a fork of the launcher
