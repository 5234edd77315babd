"""Every command line on bad input: exit code 2, one stderr line naming the problem, no
traceback, nothing half-written left behind. One table, run in process. Tools that
start processes stop them when they are stopped."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mxnet as mx
import pytest

from helpers import run_script
from octconv.files import process_running, remove_orphans, write_atomically
from octconv.gluon import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo_digits.yaml")


def _garbage_images(folder, classes, per_class):
    for c in classes:
        os.makedirs(os.path.join(folder, c), exist_ok=True)
        for i in range(per_class):
            with open(os.path.join(folder, c, f"{i}.png"), "wb") as f:
                f.write(os.urandom(300))


def _copy_run(trained_run, folder):
    shutil.copytree(trained_run, folder)
    manifest = json.load(open(os.path.join(folder, "last.json")))
    return folder, manifest


@pytest.fixture(scope="module")
def bad(trained_run, digits, tmp_path_factory):
    """Paths of bad inputs (and of good ones beside them), by name."""
    root = str(tmp_path_factory.mktemp("bad"))
    path = lambda *parts: os.path.join(root, *parts)
    val = os.path.join(digits, "val")
    with open(path("bytes.yaml"), "wb") as f:
        f.write(bytes(range(256)) * 4)
    _garbage_images(path("nonimages"), ["a", "b"], 3)
    shutil.copytree(val, path("mixed"))  # a good set with one corrupt file
    _garbage_images(path("mixed"), ["3"], 1)
    os.makedirs(path("flat"))  # images, but no class sub-folders
    for name in os.listdir(os.path.join(val, "0"))[:40]:
        shutil.copy(os.path.join(val, "0", name), path("flat", name))
    open(path("blocker"), "w").close()  # a regular file where a folder should be
    with open(path("random.rec"), "wb") as f:
        f.write(os.urandom(4096))
    with open(path("random.idx"), "w") as f:
        f.write("0\t0\n1\t2048\n")
    os.makedirs(path("empty"))
    manifest = json.load(open(os.path.join(trained_run, "last.json")))
    good_params = open(os.path.join(trained_run, manifest["params"]), "rb").read()
    with open(path("random.params"), "wb") as f:
        f.write(os.urandom(2048))
    with open(path("truncated.params"), "wb") as f:
        f.write(good_params[:len(good_params) // 2])
    run_script("tools/make_rec.py", os.path.join(digits, "val"), path("val.rec"))
    data = open(path("val.rec"), "rb").read()
    with open(path("truncated.rec"), "wb") as f:
        f.write(data[:len(data) // 3])
    shutil.copy(path("val.idx"), path("truncated.idx"))
    states_run, manifest = _copy_run(trained_run, path("states_run"))
    with open(os.path.join(states_run, manifest["states"]), "wb") as f:
        f.write(os.urandom(512))
    alpha_run, manifest = _copy_run(trained_run, path("alpha_run"))
    other = get_model("resnet10_v2_mini", alpha=0.5, classes=10)
    other.initialize()
    other(mx.nd.zeros((1, 3, 32, 32)))
    mx.nd.save(os.path.join(alpha_run, manifest["params"]),
               {k: p.data() for k, p in other.collect_params().items()})
    return dict(root=root, run=trained_run, digits=digits, val=val, demo=DEMO,
                **{name.replace(".", "_"): path(name) for name in os.listdir(root)})


TRAIN = ("train_imagenet.py", "--config", "{demo}", "DATA.train", "{digits}", "TRAIN.out_dir",
         "{root}/run")  # a later KEY VALUE pair wins
MODEL = ("--model", "resnet10_v2_mini", "--alpha", "0.25", "--classes", "10")
AT_LEAST_ONE = "must be at least 1"
NOT_A_FOLDER = "is a file, not a folder"
CASES = {
    "unknown config key": (TRAIN + ("OPTIM.lrr", "0.1"),
                           "unknown key OPTIM.lrr; valid keys here:"),
    "alpha out of range": (TRAIN + ("MODEL.alpha", "1.0"),
                           "MODEL.alpha must be in [0, 1), got 1.0"),
    "unknown exchange path": (TRAIN + ("MODEL.exchange", "[l2h, h2h]"),
                              "MODEL.exchange: ['l2h', 'h2h'] must name each of"),
    "exchange paths as a string": (TRAIN + ("MODEL.exchange", "l2h"),
                                   "MODEL.exchange: expected list, got 'l2h'"),
    "a video network on images": (TRAIN + ("MODEL.name", "i3d_resnet10_mini"),
                                  "MODEL.name i3d_resnet10_mini takes clips; DATA.kind "
                                  "'digits' does not give them"),
    "an image network on clips": (TRAIN + ("DATA.kind", "moving_digits"),
                                  "MODEL.name resnet10_v2_mini takes images; DATA.kind "
                                  "'moving_digits' does not give them"),
    "unknown network": (TRAIN + ("MODEL.name", "resnet51"),
                        "MODEL.name: unknown network 'resnet51'"),
    "wrong type": (TRAIN + ("OPTIM.epochs", "ten"), "OPTIM.epochs: expected int, got 'ten'"),
    "value outside its choices": (TRAIN + ("TRAIN.kvstore", "nccl"),
                                  "TRAIN.kvstore: 'nccl' is not one of"),
    "last_gamma without a residual BatchNorm": (
        TRAIN + ("MODEL.last_gamma", "true"),
        "MODEL.last_gamma: resnet10_v2_mini has no BatchNorm ending"),
    "bad devices": (TRAIN + ("TRAIN.devices", "gpu0"),
                    "TRAIN.devices must be 'cpu' or GPU ids like '0,1', got 'gpu0'"),
    "missing .rec": (TRAIN + ("DATA.kind", "rec", "DATA.train", "/nonexistent/train.rec"),
                     "RecordIO file not found: /nonexistent/train.rec"),
    "missing image folder": (TRAIN + ("DATA.kind", "folder", "DATA.train", "/nonexistent/dir"),
                             "image folder not found"),
    ".rec of random bytes": (TRAIN + ("DATA.kind", "rec", "DATA.train", "{random_rec}",
                                      "DATA.val", "{random_rec}", "DATA.batch_size", "1"),
                             "cannot read"),
    "config of random bytes": (("train_imagenet.py", "--config", "{bytes_yaml}"),
                               "not a YAML text file"),
    "class folders of non-images": (
        TRAIN + ("DATA.kind", "folder", "DATA.train",
                 "{nonimages}", "DATA.val", "{nonimages}", "DATA.batch_size", "2"),
        "cannot decode the image"),
    "a corrupt file in a good set": (("score.py", "{run}", "--data", "{mixed}"),
                                     "cannot decode the image"),
    "folder without class sub-folders": (("score.py", "{run}", "--data", "{flat}"),
                                         "no class sub-folders in"),
    "TRAIN.out_dir under a file": (TRAIN + ("TRAIN.out_dir", "{blocker}/run"), NOT_A_FOLDER),
    "--json under a file": (("score.py", "{run}", "--data", "{val}", "--json",
                             "{blocker}/s.json"), NOT_A_FOLDER),
    "--out of export_onnx under a file": (("tools/export_onnx.py",) + MODEL +
                                          ("--out", "{blocker}/m.onnx"), NOT_A_FOLDER),
    "--out of tvm_compile under a file": (("tools/tvm_compile.py",) + MODEL +
                                          ("--out", "{blocker}/m.so"), NOT_A_FOLDER),
    "--json of tvm_compile under a file": (("tools/tvm_compile.py",) + MODEL +
                                           ("--json", "{blocker}/r.json"), NOT_A_FOLDER),
    "--cache under a file": (("tools/tvm_compile.py",) + MODEL +
                             ("--cache", "{blocker}/tiles.json"), NOT_A_FOLDER),
    ".rec path under a file": (("tools/make_rec.py", "{val}", "{blocker}/v.rec"),
                               NOT_A_FOLDER),
    "make_rec on non-images": (("tools/make_rec.py", "{nonimages}", "{root}/n.rec"),
                               "cannot decode"),
    "corrupt .states on --resume": (
        TRAIN + ("--resume", "TRAIN.out_dir", "{states_run}", "OPTIM.epochs", "9"),
        "cannot read the optimizer state"),
    "--resume among KEY VALUE pairs": (
        TRAIN + ("OPTIM.epochs", "2", "--resume", "TRAIN.out_dir", "{empty}"),
        "checkpoint not found"),
    "--sizes 32,,64": (("score.py", "{run}", "--data", "{val}", "--sizes", "32,,64"),
                       "is not a list of positive sizes"),
    "--sizes 0": (("score.py", "{run}", "--data", "{val}", "--sizes", "0"),
                  "is not a list of positive sizes"),
    "score --batch-size 0": (("score.py", "{run}", "--data", "{val}", "--batch-size", "0"),
                             AT_LEAST_ONE),
    "export_onnx --size 0": (("tools/export_onnx.py",) + MODEL +
                             ("--size", "0", "--out", "{root}/m.onnx"), AT_LEAST_ONE),
    "export_onnx --frames for an image network": (
        ("tools/export_onnx.py",) + MODEL + ("--frames", "4", "--out", "{root}/m.onnx"),
        "--frames is for video networks; resnet10_v2_mini takes images"),
    "export_onnx of a zoo network and a checkpoint": (
        ("tools/export_onnx.py",) + MODEL + ("--checkpoint", "{run}", "--out", "{root}/m.onnx"),
        "give exactly one of --model and --checkpoint"),
    "tvm_compile of a video network": (
        ("tools/tvm_compile.py", "--model", "i3d_resnet10_mini", "--size", "32"),
        "i3d_resnet10_mini is a video network; the TVM path compiles image networks"),
    "tvm_compile of an unknown network": (("tools/tvm_compile.py", "--model", "resnet51"),
                                          "invalid choice: 'resnet51'"),
    "tvm_compile --size -3": (("tools/tvm_compile.py",) + MODEL + ("--size", "-3"),
                              AT_LEAST_ONE),
    "tvm_compile --size 32x": (("tools/tvm_compile.py",) + MODEL + ("--size", "32x"),
                               "'32x' is not a size: give a side (224) or HEIGHTxWIDTH"),
    "export_onnx --size 32x0": (("tools/export_onnx.py",) + MODEL +
                                ("--size", "32x0", "--out", "{root}/m.onnx"), AT_LEAST_ONE),
    "tvm_compile --batch 0": (("tools/tvm_compile.py",) + MODEL + ("--batch", "0"),
                              AT_LEAST_ONE),
    "tvm_compile --budget -3": (("tools/tvm_compile.py",) + MODEL + ("--budget", "-3"),
                                AT_LEAST_ONE),
    "tvm_compile --requests 1": (("tools/tvm_compile.py",) + MODEL + ("--requests", "1"),
                                 "--requests takes 2 or more request threads"),
    "complexity --size 0": (("tools/complexity.py", "--model", "resnet50_v2", "--size", "0"),
                            AT_LEAST_ONE),
    "plot_network --size -1": (("tools/plot_network.py", "--model", "resnet50_v2", "--size",
                                "-1"), AT_LEAST_ONE),
    "table2 --budget 0": (("tools/table2.py", "--budget", "0", "--out-dir", "{root}/t2"),
                          AT_LEAST_ONE),
    "DATA.size 0": (TRAIN + ("DATA.size", "0"),
                    "DATA.size must be positive"),
    "export_onnx of a checkpoint whose weights do not fit": (
        ("tools/export_onnx.py", "--checkpoint", "{alpha_run}", "--size", "32", "--out",
         "{root}/a.onnx"), "the graph needs ("),
    "random bytes as .params": (("score.py", "{random_params}") + MODEL + ("--data", "{val}"),
                                "cannot read parameters from"),
    "truncated .params": (("score.py", "{truncated_params}") + MODEL + ("--data", "{val}"),
                          "cannot read parameters from"),
    "truncated .rec": (("score.py", "{run}", "--data", "{truncated_rec}"), "cannot read"),
}


def _temporaries(root):
    return [os.path.join(folder, name) for folder, _, names in os.walk(root)
            for name in names if ".tmp" in name]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_leaves_nothing_behind(case, bad):
    (script, *args), message = CASES[case]
    out = run_script(script, *(arg.format(**bad) for arg in args))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-2000:]
    assert message in lines[0] and "Traceback" not in lines[0], lines[0]
    assert not _temporaries(bad["root"])
    assert not os.path.exists(os.path.join(bad["root"], "n.rec"))


def _children(pid):
    """The processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _state(pid):
    """Process ``pid``'s state letter from /proc (``Z``: ended, not reaped), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_permissions_of_new_files(tmp_path, umask):
    # a checkpoint or an exported library must be readable by whoever the umask lets
    # read new files (they were the owner's alone, from a temporary file's permissions)
    old = os.umask(umask)
    try:
        write_atomically(str(tmp_path / "a.params"), lambda p: open(p, "wb").write(b"x"))
        write_atomically(str(tmp_path / "b.so"), lambda p: shutil.copyfile(__file__, p))
    finally:
        os.umask(old)
    for name in ("a.params", "b.so"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask, name


def test_temporary_files_of_ended_writers_go_and_of_running_ones_stay(tmp_path):
    # a writer killed mid-write whose parent has not reaped it yet (a zombie, as under
    # a container's first process that reaps nothing) has ended: its file goes
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while _state(ended.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(ended.pid) == "Z" and _state(live.pid) not in (None, "Z")
        names = {pid: f".model.params.{pid}-ab12.tmp" for pid in (live.pid, ended.pid)}
        for name in names.values():
            (tmp_path / name).write_bytes(b"half a file")
        assert process_running(live.pid) and not process_running(ended.pid)
        remove_orphans(str(tmp_path))
        assert sorted(os.listdir(tmp_path)) == [names[live.pid]]
        write_atomically(str(tmp_path / "model.params"), lambda p: open(p, "wb").close())
        assert sorted(os.listdir(tmp_path)) == sorted([names[live.pid], "model.params"])
    finally:
        live.kill()
        live.wait()
        ended.wait()
    assert not process_running(live.pid)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
@pytest.mark.parametrize("tool, args, started", [
    ("tools/table2.py", ("--only", "mobilenet", "--threads", "1", "--no-batch", "--cache",
                         "{tmp}/tiles.json", "--out-dir", "{tmp}/out"), 1),
    ("tools/launch.py", ("-n", "1", "-s", "1", "--", sys.executable, "-c",
                         "import time; time.sleep(300)"), 3),
], ids=["table2-worker", "launch-scheduler-server-worker"])
def test_a_stopped_tool_stops_the_processes_it_started(tool, args, started, tmp_path):
    """SIGTERM to a tool while its child processes run (the table's timing worker; a
    launch's scheduler, server and worker) ends them too, and the tool exits with 128 +
    the signal. (The signal used to end the tool alone: a killed table run's worker went
    on timing beside the next run.)"""
    tool = subprocess.Popen([sys.executable, os.path.join(ROOT, tool),
                             *(arg.format(tmp=tmp_path) for arg in args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    try:
        deadline = time.monotonic() + 120
        while len(children := _children(tool.pid)) < started:
            assert tool.poll() is None and time.monotonic() < deadline, tool.returncode
            time.sleep(0.2)
        tool.send_signal(signal.SIGTERM)
        assert tool.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while any(map(process_running, children)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in children if process_running(pid)]
    finally:
        for pid in [tool.pid] + children:
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)
