"""Shared test helpers: run the same layer in both APIs on the same weights."""
import os

import mxnet as mx
import numpy as np


# Weights at variance 1 / fan-in (0.7 x He's scale): deep random networks stay far from
# chaos, so float32 rounding is not amplified into a mismatch between two runtimes.
FAN_IN = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=1)


def randomize(block, seed=0, init=None):
    """Initialize a Gluon block with random weights (biases and BN stats too).

    Weights are N(0, 0.5) unless ``init`` is given; deep networks need a fan-in scaled
    ``init`` so activations stay finite.
    """
    mx.random.seed(seed)
    block.initialize(init or mx.init.Normal(0.5), force_reinit=True)
    rng = np.random.RandomState(seed)
    for name, p in sorted(block.collect_params().items()):
        if name.endswith(("_bias", "_beta", "_running_mean")):
            p.set_data(mx.nd.array(rng.uniform(-0.5, 0.5, p.shape)))
        elif name.endswith(("_gamma", "_running_var")):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
    return {name: p.data().asnumpy() for name, p in block.collect_params().items()}


def run_symbol(outputs, inputs, params):
    """Forward a Symbol (or pair of Symbols, None allowed) with named inputs and params."""
    outs = [o for o in outputs if o is not None]
    sym = mx.sym.Group(outs)
    args = {k: mx.nd.array(v) for k, v in {**inputs, **params}.items()
            if k in sym.list_arguments()}
    aux = {k: mx.nd.array(v) for k, v in params.items() if k in sym.list_auxiliary_states()}
    missing = set(sym.list_arguments()) - set(args)
    assert not missing, f"symbol arguments without a value: {missing}"
    ex = sym.bind(mx.cpu(), args, aux_states=aux, grad_req="null")
    results = iter(o.asnumpy() for o in ex.forward(is_train=False))
    return tuple(None if o is None else next(results) for o in outputs)


def low(channels, alpha):
    """The low branch's width: the tests' own reading of the split rule."""
    return int(alpha * channels)


def split_widths(channels, alpha):
    """(high, low) widths of ``channels`` split at ``alpha``."""
    return channels - low(channels, alpha), low(channels, alpha)


def input_widths(cfg):
    """(high, low) input channels of a layer configuration (``in_c``, ``alpha_in``)."""
    return split_widths(cfg["in_c"], cfg["alpha_in"])


def groups_fit(in_c, out_c, alpha_in, alpha_out, groups):
    """Whether every non-empty branch, in and out, divides into ``groups``."""
    widths = split_widths(in_c, alpha_in) + split_widths(out_c, alpha_out)
    return all(w % groups == 0 for w in widths if w)


def layer_weights(params, prefix="layer-"):
    """``{path: weight}`` and ``{path: bias}`` of a layer's parameters named
    ``prefix + path + '_weight'`` / ``'_bias'`` (the reference's arguments)."""
    def strip(name, end):
        return name[len(prefix):-len(end)]
    return ({strip(k, "_weight"): v for k, v in params.items() if k.endswith("_weight")},
            {strip(k, "_bias"): v for k, v in params.items() if k.endswith("_bias")})


def assert_pair_close(got, want, atol=1e-4):
    """(hi, lo) outputs equal within rtol 1e-4 and ``atol`` (lo None on both sides or on
    neither)."""
    assert (got[1] is None) == (want[1] is None)
    for g, w in zip(got, want):
        if w is not None:
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=atol)


def assert_both_apis_give(want, block, symbol, params, hi, lo):
    """The Gluon ``block`` and the Symbol pair ``symbol`` (inputs ``hi``, ``lo``), on the
    same ``params``, both give the (hi, lo) pair ``want``, and the same high maps within
    1e-5. Returns Gluon's pair."""
    gluon_out = tuple(None if o is None else o.asnumpy() for o in block(nd(hi), nd(lo)))
    assert_pair_close(gluon_out, want)
    inputs = {"hi": hi, "lo": lo} if lo is not None else {"hi": hi}
    symbol_out = run_symbol(symbol, inputs, params)
    assert_pair_close(symbol_out, want)
    np.testing.assert_allclose(symbol_out[0], gluon_out[0], rtol=1e-5, atol=1e-5)
    return gluon_out


def pair_arrays(rng, batch, widths, size):
    """Random (hi, lo) NumPy inputs for (high, low) widths at ``size`` px (an int, or
    (height, width)); lo None if 0."""
    h, w = (size, size) if isinstance(size, int) else size
    hi = rng.randn(batch, widths[0], h, w).astype("float32")
    lo = (rng.randn(batch, widths[1], (h + 1) // 2, (w + 1) // 2).astype("float32")
          if widths[1] else None)
    return hi, lo


def nd(x):
    return None if x is None else mx.nd.array(x)


def assert_refused_weights(code, stderr):
    """A CLI refused a parameter file that does not fit: exit code 2 and one line naming
    the parameter and both shapes."""
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "parameter '" in stderr and "has shape (" in stderr and "the graph needs (" in stderr


def load_script(path):
    """The command-line script ``path`` (relative to the repository) as a module."""
    import importlib.util
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    name = "cli_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(path, *args):
    """Run the command line ``path`` (relative to the repository) in this process
    through its ``main(argv)``: a CompletedProcess with its exit code and what it
    printed. For error messages and quick tools; signals, kills and fresh-process
    library loading still need a subprocess."""
    import contextlib
    import io
    import subprocess
    module = load_script(path)
    out, err = io.StringIO(), io.StringIO()
    argv = [str(a) for a in args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = module.main(argv)
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
    return subprocess.CompletedProcess([path, *argv], code or 0, out.getvalue(), err.getvalue())


def write_pid(path):
    """Write this process's id to ``path`` (a task for the build processes' tests)."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
