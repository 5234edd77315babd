"""The distribution and its documented entry points."""
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import octconv
import octconv.gluon
import octconv.symbol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_one_distribution_with_a_single_top_level_name():
    dist = importlib.metadata.distribution("octconv")
    assert dist.read_text("top_level.txt").split() == ["octconv"]
    assert os.path.dirname(octconv.symbol.__file__) == os.path.join(ROOT, "symbol")
    assert os.path.dirname(octconv.gluon.__file__) == os.path.join(ROOT, "gluon")


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = open(os.path.join(ROOT, "README.md")).read()
    commands = re.search(r"```sh\n(.*?)```", readme, re.S).group(1).splitlines()
    assert [c.split("#")[0].strip() for c in commands] == ["make demo", "make test"]
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert "make test" in ci.splitlines()


def test_pins_agree_with_setup():
    norm = lambda name: name.strip().lower().replace("_", "-")
    pins = {norm(line.split("==")[0]): line.split("==")[1].strip()
            for line in open(os.path.join(ROOT, "constraints.txt")) if "==" in line}
    for req in importlib.metadata.requires("octconv"):
        name, _, version = req.split(";")[0].strip().partition("==")
        assert pins[norm(name)] == version.strip(), name


OPTIONAL = ("tvm", "tvm_ffi", "onnx", "onnxruntime", "openvino", "cv2", "sklearn", "tqdm",
            "matplotlib", "gluoncv")

CORE_ONLY = f"""
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ImportError(f"{{name}} is not installed (blocked by the test)")
sys.meta_path.insert(0, Refuse())
import mxnet as mx
from octconv import gluon as G, symbol as S
from octconv.complexity import count_symbol
net = G.get_model("resnet10_v2_mini", alpha=0.25, classes=10)
net.initialize()
print(net(mx.nd.zeros((1, 3, 32, 32))).shape)
sym = S.get_symbol("resnet10_v2_mini", alpha=0.25, num_classes=10)
print(count_symbol(sym, {{"data": (1, 3, 32, 32)}}).params > 0)
try:
    import octconv.deploy
except ImportError as err:
    print(err)
"""


def test_the_core_needs_no_optional_package():
    """``pip install .`` gives both APIs, the zoo and the counter: importing them with
    every extra's package refused still works, and ``octconv.deploy`` says what to
    install."""
    out = subprocess.run([sys.executable, "-c", CORE_ONLY], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[:2] == ["(1, 10)", "True"]
    assert "pip install 'octconv[deploy]'" in lines[2]


FRESH_CHECK = """
import importlib.util
import mxnet as mx
from octconv import gluon, symbol
assert importlib.util.find_spec("tvm") is None and importlib.util.find_spec("onnx") is None
net = gluon.get_model("resnet10_v2_mini", alpha=0.25, classes=10)
net.initialize()
print(net(mx.nd.ones((1, 3, 32, 32))).shape)
print(symbol.get_symbol("resnet10_v2_mini", alpha=0.25, num_classes=10).list_outputs())
"""


def test_pip_install_in_a_fresh_venv_gives_both_apis_without_tvm(tmp_path):
    """``pip install .`` (pinned by constraints.txt) into a new venv, from a copy of the
    tracked files: both APIs import and run; no TVM or ONNX comes with the core."""
    source = tmp_path / "source"
    for path in _project_files(""):
        os.makedirs(source / os.path.dirname(path), exist_ok=True)
        shutil.copy(os.path.join(ROOT, path), source / path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c",
                              str(source / "constraints.txt"), str(source)],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    out = subprocess.run([str(venv / "bin" / "python"), "-c", FRESH_CHECK], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["(1, 10)", "['softmax_output']"]


def test_extras_hold_the_optional_packages():
    extras = {}
    for req in importlib.metadata.requires("octconv"):
        name, _, marker = req.partition(";")
        found = re.search(r'extra == "(\w+)"', marker)
        extras.setdefault(found.group(1) if found else "core", set()).add(
            re.split("[=<>]", name)[0].strip().lower())
    assert extras["core"] == {"numpy", "mxnet", "pyyaml"}
    assert {"apache-tvm", "onnx", "onnxruntime", "openvino"} <= extras["deploy"]
    assert {"scikit-learn", "opencv-python-headless"} <= extras["train"]
    assert extras["deploy"] | extras["train"] | {"pytest"} <= extras["test"]


def _project_files(*suffixes):
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in listed.split() if p.endswith(suffixes) and os.path.exists(
        os.path.join(ROOT, p))]


def test_scoring_deployment_and_tools_do_not_depend_on_training():
    """... but for the tool whose job is training (tools/sweep.py: runs of the training
    code, needing the [train] extra like train_imagenet.py)."""
    import ast
    users = [p for p in _project_files(".py")
             if (p == "octconv/scoring.py" or p.startswith(("octconv/deploy/", "tools/")))
             and p != "tools/sweep.py"]
    assert "octconv/deploy/compile.py" in users and "tools/table2.py" in users
    for path in users:
        tree = ast.parse(open(os.path.join(ROOT, path)).read())
        for node in ast.walk(tree):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(n == "octconv.train" for n in names), f"{path} imports octconv.train"


def test_docs_stand_on_their_own():
    """Nothing points outside the repository for its facts, and every reference to a
    section of docs/ARCHITECTURES.md names a section that exists."""
    doc = open(os.path.join(ROOT, "docs", "ARCHITECTURES.md")).read()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", doc, re.M))
    assert {"1.1", "2.1", "3.5", "4.3", "5.1"} <= sections
    cited = 0
    for path in _project_files(".py", ".md", ".yaml", ".json", ".txt", ".cfg", ".ini",
                               "Makefile", "run"):
        text = open(os.path.join(ROOT, path), errors="replace").read()
        outside = "shared"  # the folder of facts given to the project's developers
        assert not re.search(rf"\b{outside}/|{outside} spec", text), path
        refs = re.findall(r"ARCHITECTURES(?:\.md\)?)?,? (?:sections? )?([\d.\-, and]+\d)", text)
        if "ARCHITECTURES.md" in text:  # "(section 2.1)" in a file that names the page
            refs += re.findall(r"\(sections? ([\d.\-, and]+\d)", text)
        for ref in refs:
            for number in re.findall(r"\d+(?:\.\d+)?", ref):
                cited += 1
                assert number in sections, f"{path} cites section {number} of ARCHITECTURES"
    assert cited > 20


def test_every_command_line_reports_a_mistake_in_one_line(capsys):
    """octconv.cli.command: a user's mistake (ValueError, a UserError, MXNet's refusal
    of a file) is one stderr line and exit code 2; a defect still raises."""
    import mxnet as mx
    import pytest
    from octconv.cli import UserError, command
    from octconv.train import TrainingError

    def failing(exc):
        @command
        def main(argv=None):
            print("printed before the error")
            raise exc
        return main

    for exc, message in [(ValueError("alpha must be in [0, 1)"), "alpha must be in [0, 1)"),
                         (TrainingError("TRAIN.out_dir holds a run"), "TRAIN.out_dir holds a run")]:
        assert isinstance(exc, (UserError, ValueError))
        assert failing(exc)() == 2
        out, err = capsys.readouterr()
        assert out == "printed before the error\n" and err == f"error: {message}\n"
    try:
        mx.nd.load("/nonexistent/file.params")
    except mx.base.MXNetError as mxnet_error:
        assert failing(mxnet_error)() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "/nonexistent/file.params" in err
    with pytest.raises(KeyError):
        failing(KeyError("a defect"))()
    tools = [p for p in _project_files(".py") if p.startswith("tools/") or
             p in ("score.py", "train_imagenet.py")]
    for path in tools:
        text = open(os.path.join(ROOT, path)).read()
        assert "def main(" not in text or "@command\ndef main(" in text, path


KEEP_AND_DROP = """
def test_passes(tmp_path):
    (tmp_path / "big").write_bytes(bytes(1 << 20))

def test_fails(tmp_path):
    (tmp_path / "big").write_bytes(bytes(1 << 20))
    assert False
"""


def test_the_suite_keeps_only_failed_tests_files(tmp_path):
    """A run writes gigabytes under the temporary root (CI's disk filled up once): under
    the project's pytest settings a passed test's directory goes when the test ends."""
    (tmp_path / "test_inner.py").write_text(KEEP_AND_DROP)
    root = tmp_path / "temproot"
    root.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-c", os.path.join(ROOT, "pytest.ini"), "--rootdir", str(tmp_path),
         str(tmp_path / "test_inner.py")],
        cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTEST_DEBUG_TEMPROOT": str(root)})
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    left = {path.name for path in root.rglob("*") if path.is_dir()}
    assert any(name.startswith("test_fails") for name in left), left
    assert not any(name.startswith("test_passes") for name in left), left
