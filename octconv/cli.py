"""What every command line of the project does with a mistake in what it was asked:
one line on stderr naming the problem, exit code 2, no traceback.

A mistake is a :class:`UserError` (bad config, data, checkpoint, run state, command
line), any other ``ValueError`` (every check of the library raises one), an ``OSError``
on a path the user gave, or an ``MXNetError`` raised while MXNet reads a user's file (its
reason, without the C++ stack). :class:`ArgumentParser` and the argument types below
turn command-line mistakes into the same one line.
"""
import argparse
import contextlib
import functools
import os
import re
import signal
import subprocess
import sys

__all__ = ["UserError", "command", "mxnet_reason", "ArgumentParser", "add_checkpoint_arguments",
           "add_network_arguments", "add_size_argument", "add_after_idle_argument",
           "check_network_arguments", "chosen_network",
           "child_processes", "positive_int", "image_size", "size_list", "exchange_paths",
           "output_path", "output_folder"]


class UserError(Exception):
    """A mistake in what the user asked for, as opposed to a defect of the program."""


def mxnet_reason(err):
    """The one-line reason of an MXNetError (its check message, without the log
    prefix and the C++ stack)."""
    text = str(err)
    found = re.search(r"Check failed: (?:[^:]*: )?(.+)", text)
    if found:
        return found.group(1).strip()
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith((" ", "Traceback", "Stack trace"))]
    return re.sub(r"^(MXNetError: )?(\[[\d:]+\] \S+: )?", "", lines[-1] if lines else text)


def command(main):
    """Wrap a command line's ``main(argv)``: a user's mistake becomes ``error: ...`` on
    one line of stderr and the exit code 2."""
    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except (UserError, ValueError) as err:
            message = str(err)
        except OSError as err:
            message = (f"{err.filename}: {err.strerror}" if err.filename and err.strerror
                       else str(err))
        except Exception as err:  # MXNet is not imported here: a CLI may set its
            mx = sys.modules.get("mxnet")  # threads before MXNet starts
            if mx is None or not isinstance(err, mx.base.MXNetError):
                raise
            message = mxnet_reason(err)
        print(f"error: {' '.join(message.split())}", file=sys.stderr)  # one line
        return 2
    return run


@contextlib.contextmanager
def child_processes():
    """``with child_processes() as children:``, for a command that starts processes
    (``subprocess.Popen``) and appends them to ``children``: however the block is left
    (normally, by an error, Ctrl-C, or SIGTERM or SIGHUP, which raise ``SystemExit``
    with exit code 128 + the signal's number inside it), the children still running are
    terminated and waited for (killed after 30 s). By default either signal ends the
    process at once and its children run on (a killed table run's worker went on timing
    beside the next run). The previous signal handlers are restored on leaving; main
    thread only, as every signal handler."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM,
                                                                     signal.SIGHUP)}
    children = []
    try:
        yield children
    finally:
        running = [child for child in children if child.poll() is None]
        for child in running:
            child.terminate()
        for child in running:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` with the module docstring as help and mistakes as one line
    (``error: ... (see PROG --help)``, exit code 2 through :func:`command`)."""

    def __init__(self, doc, **kwargs):
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                         **kwargs)

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


def add_checkpoint_arguments(parser, kinds):
    """The arguments naming a checkpoint to evaluate (``kinds``: what it may be) and its
    validation data: ``checkpoint``, ``--data``, and ``--model``, ``--alpha``,
    ``--classes`` for a bare parameter file."""
    parser.add_argument("checkpoint", help=kinds)
    parser.add_argument("--data", required=True, help="validation .rec or class folder")
    parser.add_argument("--model", help="network name (for a bare .params file)")
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--classes", type=positive_int)


def add_network_arguments(parser):
    """The arguments naming the network a conversion tool takes: a zoo network
    (``--model``, ``--alpha``, ``--classes``, with the weights of ``--params`` or random
    ones) or a trained ``--checkpoint``, and its input (``--size``, ``--batch``)."""
    from octconv.specs import model_names
    parser.add_argument("--model", choices=model_names(), metavar="NAME",
                        help="a zoo network (tools/complexity.py --zoo lists them)")
    parser.add_argument("--alpha", type=float, default=0.0,
                        help="the low-frequency fraction of the channels (default 0)")
    parser.add_argument("--classes", type=positive_int, default=1000,
                        help="output classes (default 1000)")
    parser.add_argument("--params", help="weights for --model (an MXNet .params file)")
    parser.add_argument("--checkpoint", help="a run folder or manifest of train_imagenet.py")
    add_size_argument(parser)
    parser.add_argument("--batch", type=positive_int, default=1, help="images per call")


def add_size_argument(parser, note=""):
    """``--size``, the input's side or HEIGHTxWIDTH (:func:`image_size`; default 224),
    its help followed by ``note``."""
    parser.add_argument("--size", type=image_size, default=224, metavar="SIZE",
                        help="input side in pixels, or HEIGHTxWIDTH (default 224)" + note)


def add_after_idle_argument(parser):
    """``--after-idle``, of the tools that time backends: time each backend's first call
    after the idle wait instead of a call after untimed ones
    (:func:`octconv.deploy.bench.interleave`'s ``steady``)."""
    parser.add_argument("--after-idle", action="store_true",
                        help="time each backend's first call after the idle wait, not a "
                             "call after untimed ones")


def check_network_arguments(parser, args):
    """The mistakes in :func:`add_network_arguments`' arguments, as ``parser`` errors."""
    if bool(args.model) == bool(args.checkpoint):
        parser.error("give exactly one of --model and --checkpoint")
    if args.params and not args.model:
        parser.error("--params goes with --model (a checkpoint holds its own weights)")


def chosen_network(args):
    """``(network, params)`` that :func:`add_network_arguments`' arguments name: the
    keyword arguments of :func:`octconv.export.logits_symbol` that build it and its
    weights (``{name: NDArray}``; None for a zoo network without ``--params``)."""
    from octconv.checkpoint import read_params, trained_model
    if args.checkpoint:
        return trained_model(args.checkpoint)
    network = dict(name=args.model, alpha=args.alpha, classes=args.classes)
    return network, read_params(args.params) if args.params else None


def positive_int(text):
    """An argument type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def image_size(text):
    """An argument type: an image's side (``224``, a square) or its ``HEIGHTxWIDTH``
    (``224x320``), each a whole number of at least 1: the side, or (height, width)."""
    sides = text.lower().split("x")
    if len(sides) > 2 or not all(side.strip().lstrip("-").isdigit() for side in sides):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give a side (224) or "
                                         f"HEIGHTxWIDTH (224x320)")
    values = [positive_int(side) for side in sides]
    return values[0] if len(values) == 1 else tuple(values)


def size_list(text):
    """An argument type: comma-separated image sizes, e.g. ``224,256,288``."""
    try:
        return [positive_int(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of positive sizes separated by commas, "
            f"e.g. 224,256") from None


def exchange_paths(text):
    """An argument type: the exchange paths kept, ``h2l,l2h``, one of them, or ``none``."""
    from octconv.unit import check_exchange
    try:
        return check_exchange([] if text == "none" else text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}; e.g. h2l,l2h, l2h or none") from None


def output_path(path, what):
    """``path`` if a file can be written there: its folder exists or can be made (no
    regular file on the way) and ``path`` is not a folder. Else UserError naming
    ``what`` (an option or config key): checked before the work, not after it."""
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a folder; give a file name")
    output_folder(os.path.dirname(os.path.abspath(path)), what, path)
    return path


def output_folder(folder, what, given=None):
    """``folder`` if it is, or can be made, a folder to write in; else UserError."""
    given = given or folder
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{what} {given}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise UserError(f"{what} {given}: no permission to write in {existing}")
    return folder
