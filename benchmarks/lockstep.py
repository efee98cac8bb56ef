"""Interleaved timing of long-lived worker processes: A B, B A, A B, ... in lockstep.

On a shared machine the speed drifts by tens of percent within minutes, so two programs
timed one after the other measure the machine as much as the code. Here each side lives
in its own process (its own peak memory, its own warm caches), the coordinator asks each
for one timed iteration in turn, and the figure of merit is the ratio within a pair, whose
two halves ran seconds apart under the same load. The order alternates (A B, then B A) so
that neither side always runs first after the other has warmed the caches.

    coordinator:  with Worker(cmd_a) as a, Worker(cmd_b) as b:
                      a.call("warmup"); b.call("warmup")
                      pairs = interleave([a, b], "step", 9)   # [[t_a, t_b], ...]
    worker:       serve({"warmup": ..., "step": ..., "finish": ...})

Used by ``bench_model.py --compare``, ``bench_conv.py``, ``bench_data.py`` and
``bench_predict.py``.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

_TAG = "@@lockstep "


class Worker:
    """A subprocess running ``serve``; ``call(name, **kw)`` returns its handler's reply."""

    def __init__(self, cmd, env=None, cwd=None, label=None):
        self.label = label or " ".join(cmd[-4:])
        self._log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     bufsize=1)

    def call(self, name, **kwargs):
        self.proc.stdin.write(json.dumps(dict(name=name, kwargs=kwargs)) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(_TAG):
                reply = json.loads(line[len(_TAG):])
                if "error" in reply:
                    raise RuntimeError(f"{self.label}: {name} failed:\n{reply['error']}")
                return reply["result"]
        self._log.seek(0)
        raise RuntimeError(f"{self.label} exited (code {self.proc.wait()}) during {name}:\n"
                           + self._log.read()[-4000:])

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve(handlers):
    """Worker side: answer ``Worker.call`` requests until stdin closes. Anything else the
    process prints (library logs) goes to stderr, so it cannot garble a reply."""
    reply_to = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        request = json.loads(line)
        try:
            message = dict(result=handlers[request["name"]](**request["kwargs"]))
        except Exception:  # reported to the coordinator, which stops
            import traceback
            message = dict(error=traceback.format_exc())
        reply_to.write(_TAG + json.dumps(message) + "\n")


def interleave(workers, name, pairs, **kwargs):
    """``pairs`` rounds of ``workers[i].call(name, **kwargs)`` (each returning seconds),
    every round in the reverse order of the one before; returns one list of times per
    round, in the order of ``workers``."""
    rounds = []
    for i in range(pairs):
        order = list(range(len(workers)))
        if i % 2:
            order.reverse()
        times = [None] * len(workers)
        for j in order:
            times[j] = workers[j].call(name, **kwargs)
        rounds.append(times)
    return rounds


def spread(values):
    """Median, quartiles (Python's 'inclusive' method), minimum and maximum."""
    values = sorted(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") \
        if len(values) > 1 else (values[0],) * 3
    return dict(median=statistics.median(values), q1=q1, q3=q3, min=values[0],
                max=values[-1], n=len(values))


def fmt_spread(s, digits=2):
    f = f"{{:.{digits}f}}"
    return (f"{f.format(s['median'])} (IQR {f.format(s['q1'])}-{f.format(s['q3'])}, "
            f"range {f.format(s['min'])}-{f.format(s['max'])})")


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def cpu_model():
    """The CPU's model name and its widest vector extensions (``/proc/cpuinfo``), e.g.
    ``AMD EPYC 9B45 (avx2, avx512f)``, or the platform's word for it."""
    name, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name is None:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    if name is None:
        import platform
        return platform.processor() or platform.machine()
    found = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name} ({', '.join(found)})" if found else name
