"""The distribution and its documented entry points."""
import importlib.metadata
import os
import re

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
