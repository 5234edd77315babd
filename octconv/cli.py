"""What every command line of the project does with a mistake in what it was asked:
one line on stderr naming the problem, exit code 2, no traceback.

A mistake is a :class:`UserError` (bad config, data, checkpoint, run state), any other
``ValueError`` (every check of the library raises one) or an ``MXNetError`` raised
while MXNet reads a user's file (its reason, without the C++ stack).
"""
import functools
import re
import sys

__all__ = ["UserError", "command", "mxnet_reason"]


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
        except Exception as err:  # MXNet is not imported here: a CLI may set its
            mx = sys.modules.get("mxnet")  # threads before MXNet starts
            if mx is None or not isinstance(err, mx.base.MXNetError):
                raise
            message = mxnet_reason(err)
        print(f"error: {message}", file=sys.stderr)
        return 2
    return run
