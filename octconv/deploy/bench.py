"""Timing of one network on TVM, MXNet (oneDNN), ONNX Runtime and OpenVINO.

Every backend runs the same Symbol graph with the same weights on the same input
(ONNX Runtime and OpenVINO read the same ONNX export), with the same thread count.
Runs are interleaved (TVM, MXNet, ONNX Runtime, OpenVINO, TVM, ...) after a warm-up,
so a change of machine speed during the measurement hits all backends alike. Each
timed call follows untimed calls of the same backend, made for :data:`WARM_SECONDS` once
the previous runtime's workers are idle (:func:`interleave`): it finds what calls back
to back find, as under steady load and as each runtime's own benchmark tool times them.
Without ``steady`` it is the first call after the wait instead (a request arriving at an
idle process: on several threads of a virtual machine it also pays for bringing a
sleeping core back, which varied several-fold within an hour on this project's). Each
backend's times are summarized by their median and spread (:func:`summarize`).
:func:`time_serving_backends` times backends serving several request threads at once
(:func:`serving_runs`, :func:`time_serving`).

MXNet fixes its thread count when it is imported, from ``OMP_NUM_THREADS``:
:func:`require_threads` checks it; the CLIs set it from ``--threads``. TVM, ONNX
Runtime and OpenVINO take the count as an option.
"""
import functools
import hashlib
import inspect
import os
import threading
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from octconv.complexity import count_symbol
from octconv.deploy.compile import compile_symbol
from octconv.deploy.libraries import CheckedFiles
from octconv.deploy.threads import resolve_threads, use_threads
from octconv.deploy.tuning import TileCache
from octconv.export import export_onnx, logits_symbol
from octconv.graph import Graph, param_role
from octconv.specs import get_spec, images_shape

__all__ = ["Network", "zoo_network", "gluoncv_network", "require_threads", "make_runners",
           "TVMRunner", "interleave", "wait_until_idle", "summarize", "ratio_interval",
           "median_ratio", "thread_scaling", "thread_scaling_text", "passing_cost",
           "passing_text", "WARM_SECONDS", "timed_calls",
           "random_input", "relative_difference", "differences_from_mxnet", "time_serving",
           "serving_runs", "time_serving_backends", "time_backends", "onnx_file",
           "BACKENDS"]

BACKENDS = ("tvm", "mxnet", "onnxruntime", "openvino")


def require_threads(threads):
    """Raise unless MXNet was started with ``threads`` OpenMP threads (0: all cores)."""
    threads = resolve_threads(threads)
    if os.environ.get("OMP_NUM_THREADS") != str(threads):
        raise RuntimeError(f"timing on {threads} thread(s) needs OMP_NUM_THREADS={threads} in "
                           "the environment before MXNet is imported")


@dataclass
class Network:
    """A network to time: a label, its Symbol ending at the logits, its weights."""
    label: str
    symbol: object
    params: dict

    def macs(self, size):
        """Multiply-adds of one image of ``size`` (a side, or (height, width))."""
        return count_symbol(self.symbol, {"data": images_shape(size)}).macs


def _random_params(symbol, size, seed=0):
    """Weights drawn like a trained network's scale: He-normal convolutions and dense
    layers, BatchNorm statistics near identity; drawn in float32 (a ResNet-50's 25 M
    weights in 0.37 s, against 1.49 in float64 and a cast)."""
    rng = np.random.default_rng(seed)
    shapes, _, aux = symbol.infer_shape(data=images_shape(size))
    params = {}
    names = symbol.list_arguments() + symbol.list_auxiliary_states()
    for name, shape in zip(names, shapes + aux):
        if name == "data":
            continue
        role = param_role(name)
        if role == "one":
            params[name] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
            continue
        std = 0.1 if role == "zero" else np.sqrt(2.0 / int(np.prod(shape[1:])))
        params[name] = rng.standard_normal(shape, np.float32)
        params[name] *= np.float32(std)
    for gamma in Graph(symbol).fixed_gammas():  # 1: MXNet ignores the array, exporters do not
        params[gamma] = np.ones_like(params[gamma])
    return params


def zoo_network(name, alpha=0.0, classes=1000, params=None, size=224, **options):
    """A network of this project's zoo (``options`` as :func:`octconv.symbol.get_symbol`
    takes them); random weights unless ``params`` is given. Image networks only (the
    TVM path's kernels are 2-D): a video network is a ValueError."""
    if get_spec(name).dims != 2:
        raise ValueError(f"{name} is a video network; the TVM path compiles image networks "
                         "(tools/export_onnx.py exports video networks to ONNX)")
    symbol = logits_symbol(name, alpha, classes, **options)
    params = params if params is not None else _random_params(symbol, size)
    label = f"{name} alpha={alpha:g}"
    return Network(label, symbol, {k: np.asarray(v, np.float32) for k, v in params.items()})


def gluoncv_network(name, size=224):
    """A vanilla network of GluonCV's model zoo (strided convolutions), random weights."""
    from gluoncv.model_zoo import get_model
    net = get_model(name, pretrained=False)
    symbol = net(mx.sym.var("data"))
    return Network(f"{name} (GluonCV)", symbol, _random_params(symbol, size))


class _MXNet:
    """MXNet's executor (oneDNN's graph pass, whose notice on stderr at each bind is
    turned off unless the environment asks for it)."""

    def __init__(self, network, x):
        os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
        args = {k: mx.nd.array(v) for k, v in network.params.items()}
        args["data"] = mx.nd.array(x)
        wanted_args = set(network.symbol.list_arguments())
        self.executor = network.symbol.bind(
            mx.cpu(), {k: v for k, v in args.items() if k in wanted_args},
            aux_states={k: args[k] for k in network.symbol.list_auxiliary_states()},
            grad_req="null")

    def __call__(self):
        return self.executor.forward(is_train=False)[0].asnumpy()


class _OnnxRuntime:
    """ONNX Runtime's CPU provider on the ONNX export, ``threads`` intra-op threads;
    its session takes calls from several threads at once (:meth:`serve`), which share
    that pool."""

    def __init__(self, onnx_path, x, threads):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(onnx_path, options,
                                            providers=["CPUExecutionProvider"])
        self.input_name, self.x = self.session.get_inputs()[0].name, x

    def __call__(self):
        return self.serve(self.x)

    def serve(self, x):
        """The output for ``x`` (safe to call from several threads at once)."""
        return self.session.run(None, {self.input_name: x})[0]


class _OpenVINO:
    """OpenVINO's CPU plugin on the ONNX export, float32: the latency hint and one
    stream of ``threads`` threads; with ``streams`` > 1 the throughput hint and as many
    streams of ``threads`` threads each, for request threads calling :meth:`serve` at
    once (OpenVINO's way to serve requests in parallel: an infer request per calling
    thread, the streams running them side by side)."""

    def __init__(self, onnx_path, x, threads, streams=1):
        import openvino as ov
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads * streams, "NUM_STREAMS": streams,
                  "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
                  "INFERENCE_PRECISION_HINT": "f32"}
        self.model = core.compile_model(core.read_model(onnx_path), "CPU", config)
        self.x = x
        self.requests = threading.local()  # the calling thread's infer request

    def __call__(self):
        return self.serve(self.x)

    def serve(self, x):
        """The output for ``x``, by an infer request of the calling thread's own."""
        request = getattr(self.requests, "request", None)
        if request is None:
            request = self.requests.request = self.model.create_infer_request()
        return np.array(request.infer({0: x})[0])


class TVMRunner:
    """Runs a compiled network on ``x``. :meth:`prepare` switches TVM's thread pool to
    the network's thread count outside the timing and says whether it did: a switch
    restarts the pool's workers and slows the call after it (measured: 11 instead of
    6.5 ms for MobileNet v2 on two threads), which :func:`interleave` leaves untimed."""

    def __init__(self, compiled, x):
        self.compiled = compiled
        self.x = x

    def prepare(self):
        return use_threads(self.compiled.threads)

    def __call__(self):
        return self.compiled.run(self.x)

    def with_threads(self, threads):
        """The same library on the same input, run on ``threads`` threads."""
        return TVMRunner(self.compiled.with_threads(threads), self.x)


def make_runners(network, x, backends=BACKENDS, threads=1, target=None, cache=None,
                 budget=4, compiled=None):
    """``{backend: callable}`` running ``network`` on ``x`` (N x 3 x H x W) with
    ``threads`` threads each; ONNX Runtime and OpenVINO read :func:`onnx_file`;
    ``compiled``: the network already compiled by TVM for ``x``'s shape and ``threads``."""
    require_threads(threads)
    threads = resolve_threads(threads)
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backend {sorted(unknown)[0]!r}; choose from {BACKENDS}")
    onnx_path = None
    if {"onnxruntime", "openvino"} & set(backends):
        onnx_path = onnx_file(network, x.shape, cache)
    runners = {}
    for backend in backends:
        if backend == "tvm":
            runners[backend] = TVMRunner(compiled or compile_symbol(
                network.symbol, network.params, x.shape, target, cache, budget, threads), x)
        elif backend == "mxnet":
            runners[backend] = _MXNet(network, x)
        elif backend == "onnxruntime":
            runners[backend] = _OnnxRuntime(onnx_path, x, threads)
        else:
            runners[backend] = _OpenVINO(onnx_path, x, threads)
    return runners


def onnx_file(network, input_shape, cache=None):
    """The ONNX export of ``network`` for inputs of ``input_shape`` (N, 3, H, W), kept
    in an ``onnx`` folder beside the TVM tile cache ``cache`` (a
    :class:`~octconv.deploy.tuning.TileCache`; the default one when None), named by a
    digest of the graph, the weights, the shape, the export code and the versions of
    MXNet and ONNX: timing the same network again (the table tool times each in two
    processes) exports nothing. A file that fails its checksum is exported again."""
    import onnx
    tiles = cache if cache is not None else TileCache()
    files = CheckedFiles(tiles.folder_beside("onnx"), ".onnx", "ONNX export")
    digest = hashlib.sha256(repr((tuple(input_shape), mx.__version__, onnx.__version__))
                            .encode())
    with open(inspect.getsourcefile(export_onnx), "rb") as f:
        digest.update(f.read())
    digest.update(network.symbol.tojson().encode())
    for name in sorted(network.params):
        array = np.ascontiguousarray(network.params[name], np.float32)
        digest.update(repr((name, array.shape)).encode())
        digest.update(array.tobytes())
    digest = digest.hexdigest()
    if not files.valid(digest):
        files.store(digest, lambda tmp: export_onnx(
            network.symbol, network.params, tmp, size=input_shape[2:], batch=input_shape[0]))
    return files.path(digest)


def wait_until_idle(window=0.01, limit=1.0):
    """Sleep until no thread of this process uses the CPU, i.e. the workers a runtime
    keeps spinning after a call have gone to sleep (after a 2-thread call, measured
    here: ONNX Runtime's about 45 ms, TVM's about 6 with the spin count that
    :mod:`octconv.deploy.threads` sets, OpenVINO's and MXNet's a few); at most ``limit``
    seconds. Idle means the process used under a tenth of a ``window`` of CPU time
    during a window; windows span several scheduler ticks (4 ms here), since Linux
    may count a busy thread's time on another core only at its ticks. Returns the
    seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        used = time.process_time()
        time.sleep(window)
        if time.process_time() - used < 0.1 * window:
            break
    return time.perf_counter() - start


# Seconds of untimed calls before a steady timed call. After 10-50 ms idle, this
# project's Intel Xeon VM read data from beyond its L2 cache 1.5-1.8 x slower at first,
# and about as fast as back to back only after 20-40 ms of it (results/NOTES.md, stop
# 49); in-cache arithmetic was not slowed. One call of a short network is not enough.
WARM_SECONDS = 0.04


def timed_calls(steady):
    """What each timed call of :func:`interleave` follows, said for a table or a report:
    ``steady`` (the default), or not (the tools' ``--after-idle``)."""
    if steady:
        return (f"each timed call right after {WARM_SECONDS * 1e3:.0f} ms of untimed calls of "
                "its backend, begun once the previous backend's workers went idle (steady "
                "state)")
    return ("each timed call the first of its backend after the previous backend's workers "
            "went idle (--after-idle)")


def interleave(runners, runs, warmup=2, steady=True, warm=WARM_SECONDS):
    """``{key: [ms, ...]}``: ``runs`` calls of every runner, one of each per round.
    Each timed call starts in an idle process (:func:`wait_until_idle`): a runtime's
    workers still spinning after its call would take a core from the next runtime's.
    With ``steady``, the runner is called untimed between that wait and the timed call,
    once and then again until ``warm`` seconds have passed, so that the timed call finds
    what a call back to back finds: its runtime's workers awake, its own data, not the
    previous runtime's, in the caches, and a machine that is not coming back from idle;
    without, the timed call is the first after the wait. A runner's ``prepare()``, if
    it has one, is called first; when it says it changed something that slows the next
    call (TVM's thread count), that call is an untimed one: made before the wait
    without ``steady``, the first after the wait with it."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    times = {key: [] for key in runners}
    for _ in range(runs):
        for key, run in runners.items():
            if getattr(run, "prepare", lambda: False)() and not steady:
                run()
            wait_until_idle()
            if steady:
                until = time.perf_counter() + warm
                run()
                while time.perf_counter() < until:
                    run()
            start = time.perf_counter()
            run()
            times[key].append((time.perf_counter() - start) * 1e3)
    return times


def summarize(ms):
    """Median, extremes, quartiles and spread (interquartile range over the median) of
    a list of times."""
    q1, median, q3 = (float(v) for v in np.percentile(ms, [25, 50, 75]))
    return {"median": median, "min": float(min(ms)), "max": float(max(ms)), "q1": q1,
            "q3": q3, "spread": (q3 - q1) / median, "runs": len(ms)}


def ratio_interval(numerator, denominator, level=0.95, resamples=2000, seed=0):
    """``(low, high)``: a ``level`` bootstrap interval of ``median(numerator) /
    median(denominator)``, two lists of times taken in the same interleaved rounds
    (``numerator[r]`` and ``denominator[r]`` in round ``r``). Rounds are resampled
    whole, so that what moves both times of a round (the machine's speed that
    minute) moves the resampled ratio no more than it moved the measured one."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    if numerator.shape != denominator.shape or numerator.ndim != 1 or not len(numerator):
        raise ValueError(f"paired rounds expected, got {numerator.shape} and "
                         f"{denominator.shape} times")
    rounds = np.random.default_rng(seed).integers(0, len(numerator),
                                                  (resamples, len(numerator)))
    ratios = np.median(numerator[rounds], axis=1) / np.median(denominator[rounds], axis=1)
    tail = 50 * (1 - level)
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def median_ratio(numerator, denominator):
    """``(ratio, [low, high])``: the ratio of the medians of two lists of times taken in
    the same rounds, and its 95 % interval (:func:`ratio_interval`)."""
    return (float(np.median(numerator) / np.median(denominator)),
            [float(v) for v in ratio_interval(numerator, denominator)])


def thread_scaling(one, many):
    """A 1 -> N thread scaling (a network's, or the machine's scaling check's) from the
    milliseconds of calls on one thread (``one``) and on N (``many``), one of each per
    round of the same loop: ``{"scaling": the ratio of medians, "interval": its 95 %
    interval (:func:`ratio_interval`), "spread": the interquartile spread of the N-thread
    calls}``. The median says what held most of the time; the spread, how much it
    wavered (a machine slow in a quarter of the rounds leaves the median where it was)."""
    scaling, interval = median_ratio(one, many)
    return {"scaling": scaling, "interval": interval, "spread": summarize(many)["spread"]}


def passing_cost(own, passed):
    """The data-passing check's figure (:mod:`octconv.deploy.scaling_check`) from the
    milliseconds of its passes reading their own thread's writes (``own``) and another
    thread's (``passed``), one of each per round of the same loop: ``{"ratio": the
    ratio of medians passed / own, "interval": its 95 % interval}``
    (:func:`median_ratio`)."""
    ratio, interval = median_ratio(passed, own)
    return {"ratio": ratio, "interval": interval}


def passing_text(value):
    """A :func:`passing_cost` as printed: ``"reading another core's writes 3.10
    [2.95-3.30] x as long as one's own"``."""
    low, high = value["interval"]
    return (f"reading another core's writes {value['ratio']:.2f} [{low:.2f}-{high:.2f}] x "
            "as long as one's own")


def thread_scaling_text(value, threads):
    """A :func:`thread_scaling` as printed: ``"1.88 [1.85-1.89] (spread 3 % on 2
    threads)"``."""
    low, high = value["interval"]
    return (f"{value['scaling']:.2f} [{low:.2f}-{high:.2f}] (spread "
            f"{100 * value['spread']:.0f} % on {threads} threads)")


def random_input(shape, seed=0):
    """A float32 array of ``shape`` from the standard normal: the input networks are
    timed and compared on."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def relative_difference(out, reference):
    """``max |out - reference|`` over ``max |reference|``: how far an output is from the
    reference output, as a fraction of its scale (logits of random weights reach 1e7)."""
    return float(np.abs(out - reference).max() / max(float(np.abs(reference).max()), 1e-12))


def differences_from_mxnet(runners):
    """``{backend: relative_difference(its output, MXNet's)}`` for every runner but
    MXNet's, each called once (``{}`` without an MXNet runner)."""
    outputs = {b: run() for b, run in runners.items()}
    if "mxnet" not in outputs:
        return {}
    return {b: relative_difference(out, outputs["mxnet"])
            for b, out in outputs.items() if b != "mxnet"}


class _RequestThreads:
    """``count`` threads that call ``run(x)`` on demand, as a server's long-lived request
    threads do: each makes its first call (and so its TVM VM and thread pool) when it
    starts, untimed. :meth:`serve` has each make a given number of calls, all starting
    together, and returns the seconds until the last is done; outputs that differ from
    ``want``, and errors, are counted in ``wrong``."""

    def __init__(self, run, x, count, want):
        self.run, self.x, self.want, self.wrong = run, x, want, []
        self.calls = [0] * count  # each thread's calls this time; None: stop
        self.start, self.done = threading.Barrier(count + 1), threading.Barrier(count + 1)
        self.threads = [threading.Thread(target=self._request, args=(k,), daemon=True)
                        for k in range(count)]
        for thread in self.threads:
            thread.start()

    def _call(self):
        try:
            if not np.array_equal(self.run(self.x), self.want):
                self.wrong.append("another output")
        except Exception as error:  # (a thread's exception would end it silently)
            self.wrong.append(repr(error))

    def _request(self, k):
        self._call()
        try:
            while True:
                self.start.wait()
                if self.calls[k] is None:
                    return
                for _ in range(self.calls[k]):
                    self._call()
                self.done.wait()
        except threading.BrokenBarrierError:  # the timing was abandoned (:meth:`abort`)
            return

    def serve(self, calls):
        """Seconds for thread ``k`` to make ``calls[k]`` calls, all threads at once,
        starting in an idle process (:func:`wait_until_idle`)."""
        self.calls[:] = calls
        wait_until_idle()
        self.start.wait()
        begin = time.perf_counter()
        self.done.wait()
        return time.perf_counter() - begin

    def close(self):
        """End the threads once they wait for work."""
        self.calls[:] = [None] * len(self.threads)
        self.start.wait()
        for thread in self.threads:
            thread.join()

    def abort(self):
        """End the threads wherever they wait (a timing interrupted)."""
        self.start.abort()
        self.done.abort()


SERVING_SECONDS = 0.2  # about how long each request thread calls in a timed phase


def serving_runs(network, x, compiled, requests, cache=None):
    """``{backend: x -> output}`` for :func:`time_serving`, each serving ``requests``
    request threads at once on ``compiled.threads`` threads a request thread: TVM's
    library ``compiled`` (each calling thread runs a VM and a thread pool of its own),
    ONNX Runtime (one session, whose concurrent calls share its pool of intra-op
    threads) and OpenVINO (as many streams as request threads), the latter two on
    :func:`onnx_file`. MXNet's executor runs one call at a time and is not among them."""
    onnx_path = onnx_file(network, x.shape, cache)
    return {"tvm": compiled.run,
            "onnxruntime": _OnnxRuntime(onnx_path, x, compiled.threads).serve,
            "openvino": _OpenVINO(onnx_path, x, compiled.threads, streams=requests).serve}


def time_serving_backends(network, compiled, requests, rounds, cache=None, seed=0):
    """:func:`time_serving` of the backends of :func:`serving_runs` on a random input of
    ``compiled``'s shape: ``{"backends": {backend: its result}, "max_diff": {backend:
    relative difference from MXNet's output}}`` (:func:`differences_from_mxnet`), as
    :func:`time_backends` gives them for single calls."""
    x = random_input(compiled.input_shape, seed)
    runs = serving_runs(network, x, compiled, requests, cache)
    outputs = {backend: functools.partial(run, x) for backend, run in runs.items()}
    outputs.update(make_runners(network, x, ("mxnet",), compiled.threads))
    return {"backends": time_serving(runs, x, requests, rounds),
            "max_diff": differences_from_mxnet(outputs)}


def _serving_calls(run, x):
    """Calls of ``run`` that take about :data:`SERVING_SECONDS` (three timed first)."""
    spent = []
    for _ in range(3):
        start = time.perf_counter()
        run(x)
        spent.append(time.perf_counter() - start)
    return max(1, round(SERVING_SECONDS / float(np.median(spent))))


def time_serving(runs, x, requests, rounds, calls=None):
    """Images/s of each of ``runs`` (``{name: x -> output}``, each safe to call from
    several threads at once, as a TVM library is) for ``requests`` request threads
    calling it at once, against one request thread making as many calls. Each round
    times, for each run in turn, one of its threads making ``requests`` x ``calls``
    calls, then all ``requests`` making ``calls`` each; ``rounds`` rounds after one
    untimed. ``calls`` defaults to as many as take each run about
    :data:`SERVING_SECONDS`: with phases of 5 calls of a short network (25 ms), the
    rounds' rates of request threads at once varied two-fold within a run and the gains
    of four runs were 1.05-1.89 (Oct-MobileNet v1 0.75 here); with phases of about 0.2
    s, 1.78-1.94. ``{name: {"calls", "one": [images/s per round], "many": [...], "gain":
    the median of many over that of one, "interval": its 95 % interval
    (:func:`ratio_interval`)}}``. Every output is checked against one call's alone of
    the same run: a RuntimeError names the run and says how many differ."""
    if requests < 2:
        raise ValueError(f"serving is timed for 2 or more request threads, got {requests}")
    pools, seconds = {}, {name: {"one": [], "many": []} for name in runs}
    wants = {name: run(x) for name, run in runs.items()}
    counts = {name: calls or _serving_calls(run, x) for name, run in runs.items()}
    try:  # (request threads started once no run is calibrated any more)
        for name, run in runs.items():
            pools[name] = _RequestThreads(run, x, requests, wants[name])
        for r in range(rounds + 1):
            for name, pool in pools.items():
                one = pool.serve([requests * counts[name]] + [0] * (requests - 1))
                many = pool.serve([counts[name]] * requests)
                if r:  # (the first round untimed)
                    seconds[name]["one"].append(one)
                    seconds[name]["many"].append(many)
    except BaseException:
        for pool in pools.values():
            pool.abort()
        raise
    for pool in pools.values():
        pool.close()
    for name, pool in pools.items():
        if pool.wrong:
            raise RuntimeError(f"{name}: {len(pool.wrong)} calls from request threads gave "
                               f"another output than one call alone (first: {pool.wrong[0]})")
    results = {}
    for name, spent in seconds.items():
        images = requests * counts[name] * len(x)
        rates = {key: [images / t for t in times] for key, times in spent.items()}
        gain, interval = median_ratio(rates["many"], rates["one"])
        results[name] = dict(rates, calls=counts[name], gain=gain, interval=interval)
    return results


def time_backends(network, size=224, runs=10, warmup=2, backends=BACKENDS, target=None,
                  cache=None, budget=4, seed=0, compiled=None, threads=1, batch=1,
                  scaling=False, steady=True):
    """``{"ms": {backend: summary}, "times": {backend: [ms per round]}, "max_diff":
    {backend: relative difference from MXNet's output} (:func:`differences_from_mxnet`),
    "tvm": compile stats}``
    for ``batch`` images of ``size`` (a side, or (height, width)) on ``threads``
    threads; summaries as :func:`summarize` (times per call).
    ``compiled``: the network already compiled for this input (else it is compiled).
    ``scaling``, with TVM among the backends and more than one thread: TVM's library
    also runs on one thread, and the machine's scaling check
    (:mod:`octconv.deploy.scaling_check`) on one thread and on ``threads``, and its
    data-passing check on ``threads``, in the same rounds (the checks first in each, as
    in the table); ``"scaling"`` then holds ``threads``, for ``"tvm"`` and ``"check"``
    the :func:`thread_scaling` of their times with the times (``"times"``: ``{"1":
    [...], "many": [...]}``), and for ``"passing"`` the :func:`passing_cost` with the
    times (``{"own": [...], "passed": [...]}``). ``steady``: each
    timed call follows untimed ones of the same runner (else it is the first after the
    idle wait: :func:`interleave`)."""
    x = random_input(images_shape(size, batch), seed)
    runners = make_runners(network, x, backends, threads, target, cache, budget, compiled)
    max_diff = differences_from_mxnet(runners)
    threads = resolve_threads(threads)
    first, last = {}, {}
    if scaling and threads > 1 and "tvm" in runners:  # the check for TVM's target
        from octconv.deploy.scaling_check import scaling_check
        check = scaling_check(threads, runners["tvm"].compiled.target, cache or TileCache())
        first = {("check", name): run for name, run in check.items()}
        last = {("tvm", "1"): runners["tvm"].with_threads(1)}
    times = interleave({**first, **runners, **last}, runs, warmup, steady)
    result = {"ms": {b: summarize(times[b]) for b in runners}, "times": {
        b: times[b] for b in runners}, "max_diff": max_diff}
    if first:
        from octconv.deploy.scaling_check import figures
        mine = {name: times[("check", name)] for name in check}
        machine = figures(mine)
        one, many = times[("tvm", "1")], times["tvm"]
        result["scaling"] = {
            "threads": threads,
            "tvm": dict(thread_scaling(one, many), times={"1": one, "many": many}),
            "check": dict(machine["scaling"], times={"1": mine["tvm_1"], "many": mine["tvm"]}),
            "passing": dict(machine["passing"], times={"own": mine["own"],
                                                       "passed": mine["passed"]})}
    if "tvm" in runners:
        result["tvm"] = runners["tvm"].compiled.stats
    return result
