#!/usr/bin/env python
"""Run a distributed-kvstore training on this host: a scheduler, servers and workers.

    python tools/launch.py -n 2 -s 1 -- python train_imagenet.py --config C.yaml \\
        TRAIN.kvstore dist_sync

Every process gets MXNet's DMLC_* variables (DMLC_ROLE, DMLC_PS_ROOT_URI=127.0.0.1,
DMLC_PS_ROOT_PORT, DMLC_NUM_SERVER, DMLC_NUM_WORKER); workers run the command, and
each reads its own shard of the data. Workers' output is prefixed with their index.

Several hosts: start the same roles by hand with DMLC_PS_ROOT_URI set to the
scheduler's address: one scheduler (``DMLC_ROLE=scheduler python -c "import mxnet"``),
DMLC_NUM_SERVER servers (``DMLC_ROLE=server``, same command) and DMLC_NUM_WORKER
workers (``DMLC_ROLE=worker`` running the training command), each host with a GPU list
in TRAIN.devices and TRAIN.kvstore dist_sync or dist_device_sync.
"""
import argparse
import os
import socket
import subprocess
import sys
import threading

from octconv.cli import ArgumentParser, child_processes, command, positive_int


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _relay(stream, prefix):
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"{prefix}{line}")
        sys.stdout.flush()


def launch(command, workers, servers, port=None):
    """Run ``command`` as ``workers`` workers; return the worst worker exit code."""
    env = dict(os.environ, DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(port or free_port()),
               DMLC_NUM_SERVER=str(servers), DMLC_NUM_WORKER=str(workers))
    idle = [sys.executable, "-c", "import mxnet"]
    with child_processes() as children:  # stopping launch stops them all
        children += [subprocess.Popen(idle, env=dict(env, DMLC_ROLE=role))
                     for role in ["scheduler"] + ["server"] * servers]
        procs, relays = [], []
        for rank in range(workers):
            proc = subprocess.Popen(command, env=dict(env, DMLC_ROLE="worker"), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            children.append(proc)
            relay = threading.Thread(target=_relay, args=(proc.stdout, f"[worker {rank}] "))
            relay.start()
            procs.append(proc)
            relays.append(relay)
        codes = [p.wait() for p in procs]
        for relay in relays:
            relay.join()
    return max(codes, key=abs)


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("-n", "--workers", type=positive_int, required=True)
    parser.add_argument("-s", "--servers", type=positive_int, default=1)
    parser.add_argument("--port", type=int, help="scheduler port (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the worker command after --")
    return launch(command, args.workers, args.servers, args.port)


if __name__ == "__main__":
    sys.exit(main())
