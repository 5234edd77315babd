"""score.py against an independent evaluation, and the release checkpoint converter."""
import json
import math
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from helpers import randomize
from octconv.gluon import get_model
from octconv.release import from_release, ReleaseNameError, to_release

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def score(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "score.py"), *args],
                          capture_output=True, text=True)


def independent_eval(net, folder, size, crop_ratio, mean, std):
    """Top-1 / top-5 with OpenCV + NumPy preprocessing written here."""
    classes = sorted(os.listdir(folder))
    hits1 = hits5 = count = 0
    for label, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(folder, c))):
            image = cv2.cvtColor(cv2.imread(os.path.join(folder, c, f)), cv2.COLOR_BGR2RGB)
            short = int(math.ceil(size / crop_ratio))
            h, w = image.shape[:2]
            scale = short / min(h, w)
            image = cv2.resize(image, (round(w * scale), round(h * scale)),
                               interpolation=cv2.INTER_LINEAR)
            h, w = image.shape[:2]
            top, left = (h - size) // 2, (w - size) // 2
            crop = image[top:top + size, left:left + size].astype(np.float32)
            x = ((crop - np.array(mean)) / np.array(std)).transpose(2, 0, 1)[None]
            logits = net(mx.nd.array(x)).asnumpy()[0]
            ranked = np.argsort(-logits)
            hits1 += ranked[0] == label
            hits5 += label in ranked[:5]
            count += 1
    return hits1 / count, hits5 / count, count


def test_score_of_a_trained_run_equals_an_independent_evaluation(trained_run, digits, tmp_path):
    out = score(trained_run, "--data", os.path.join(digits, "val"), "--json",
                str(tmp_path / "s.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.load(open(tmp_path / "s.json"))["results"][0]
    assert result["size"] == 32 and result["top1"] > 0.5  # chance is 0.1

    manifest = json.load(open(os.path.join(trained_run, "last.json")))
    data_cfg = manifest["config"]["DATA"]
    net = get_model("resnet10_v2_mini", alpha=0.25, classes=10)
    params = mx.nd.load(os.path.join(trained_run, manifest["params"]))
    net.collect_params().load_dict(params)
    top1, top5, count = independent_eval(net, os.path.join(digits, "val"), 32,
                                         data_cfg["crop_ratio"], data_cfg["mean"], data_cfg["std"])
    assert result["images"] == count
    assert result["top1"] == pytest.approx(top1, abs=1.5 / count)
    assert result["top5"] == pytest.approx(top5, abs=1.5 / count)


def test_several_sizes_and_a_symbol_checkpoint(trained_run, digits, tmp_path):
    out = score(trained_run, "--data", os.path.join(digits, "val"), "--sizes", "32,48",
                "--json", str(tmp_path / "a.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    sizes = [r["size"] for r in json.load(open(tmp_path / "a.json"))["results"]]
    assert sizes == [32, 48] and "top-1" in out.stdout

    from octconv.scoring import load_for_scoring
    net, _ = load_for_scoring(trained_run)
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.export(str(tmp_path / "demo"))
    # a Symbol file carries no data recipe: score both the same way, with a preset
    results = {}
    for tag, checkpoint in (("run", trained_run), ("symbol", str(tmp_path / "demo-symbol.json"))):
        out = score(checkpoint, "--data", os.path.join(digits, "val"), "--sizes", "32",
                    "--preset", "imagenet", "--json", str(tmp_path / f"{tag}.json"))
        assert out.returncode == 0, out.stderr[-2000:]
        results[tag] = json.load(open(tmp_path / f"{tag}.json"))["results"][0]["top1"]
    assert results["symbol"] == results["run"]


def test_a_checkpoint_that_does_not_fit_names_the_parameter(trained_run, digits):
    manifest = json.load(open(os.path.join(trained_run, "last.json")))
    params = os.path.join(trained_run, manifest["params"])
    out = score(params, "--model", "resnet10_v2_mini", "--alpha", "0.5", "--classes", "10",
                "--data", os.path.join(digits, "val"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "has shape (" in out.stderr and "in the file" in out.stderr
    out = score(params, "--model", "mobilenet_v1_075", "--classes", "10",
                "--data", os.path.join(digits, "val"))
    assert out.returncode == 2 and "parameter conv1_weight (24, 3, 3, 3) is missing" in out.stderr
    out = score(params, "--data", os.path.join(digits, "val"))
    assert out.returncode == 2 and "give the network (--model, --alpha)" in out.stderr


# Names as the release's Gluon code builds them (utils/gluon/utils/*.py, prefix per net).
RELEASE_NAMES = {
    ("mobilenet_v1_075", 0.375): {
        "M075_conv1_weight": (24, 3, 3, 3), "M075_bn1_running_var": (24,),
        "M075_L1_B1_conv1-h2h_weight": (24, 1, 3, 3), "M075_L1_B1_conv2-h2l_weight": (18, 24, 1, 1),
        "M075_L2_B0_conv1-l2l_weight": (18, 1, 3, 3), "M075_L2_B0_bn1-l_gamma": (18,),
        "M075_classifier_weight": (1000, 768, 1, 1), "M075_classifier_bias": (1000,)},
    ("mobilenet_v2_100", 0.375): {
        "M100_conv1_weight": (32, 3, 3, 3), "M100_tail-conv_weight": (1280, 320, 1, 1),
        "M100_tail-bn_gamma": (1280,), "M100_L1_B1_conv1-h2l_weight": (12, 32, 1, 1)},
    ("resnet152_v1f", 0.125): {
        "R152_stem_conv1_weight": (8, 3, 3, 3), "R152_stem_bn1_gamma": (8,),
        "R152_stem2_conv2_weight": (32, 32, 3, 3), "R152_stem2_bn4_running_mean": (64,),
        "R152_L1_B0_conv1-h2h_weight": (56, 64, 1, 1), "R152_L1_B0_conv4-h2l_weight": (32, 64, 1, 1),
        "R152_L4_B2_bn3-h_gamma": (2048,), "R152_classifier_weight": (1000, 2048, 1, 1)},
    ("se_resnet152_v1e", 0.125): {
        "R152_stem_conv3_weight": (64, 32, 3, 3), "R152_L1_B0_bn1a-h_gamma": (64,),
        "R152_L1_B0_se-conv1_weight": (16, 256, 1, 1), "R152_L1_B0_se-conv2-l_bias": (32,)},
}


@pytest.mark.parametrize("model, alpha", sorted(RELEASE_NAMES))
def test_release_names_map_completely_and_round_trip(model, alpha):
    net = get_model(model, alpha=alpha)
    params = randomize(net, seed=3, init=mx.init.Xavier(magnitude=1))
    release = to_release(params, model)
    for name, shape in RELEASE_NAMES[(model, alpha)].items():
        assert release[name].shape == shape, name
    expected = {n: p.shape for n, p in net.collect_params().items()}
    back = from_release(release, model, expected)
    assert set(back) == set(params)
    assert all(np.array_equal(back[n], params[n]) for n in params)
    with pytest.raises(ReleaseNameError, match="left over"):
        from_release({**release, release_extra(model): np.zeros(3)}, model, expected)


def release_extra(model):
    return {"mobilenet_v1_075": "M075_fc_weight", "mobilenet_v2_100": "M100_fc_weight"}.get(
        model, "R152_fc_weight")


def test_release_file_round_trip_scores_identically(digits, tmp_path):
    """Our weights written as a release .params, scored back through the converter."""
    net = get_model("mobilenet_v1_075", alpha=0.375, classes=10)
    params = randomize(net, seed=4, init=mx.init.Xavier(magnitude=1))
    mx.nd.save(str(tmp_path / "release.params"),
               {k: mx.nd.array(v) for k, v in to_release(params, "mobilenet_v1_075").items()})
    from octconv.scoring import load_for_scoring
    loaded, _ = load_for_scoring(str(tmp_path / "release.params"), "mobilenet_v1_075", 0.375, 10)
    x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (2, 3, 97, 97)))
    np.testing.assert_array_equal(loaded(x).asnumpy(), net(x).asnumpy())


def test_symbol_checkpoint_ending_in_softmax_scores_its_logits(tmp_path):
    """The release's Symbol files: prefix-symbol.json with SoftmaxOutput, arg:/aux: keys."""
    from octconv.scoring import load_for_scoring
    from octconv.symbol import get_symbol
    net = get_model("resnet10_v2_mini", alpha=0.25, classes=10)
    params = randomize(net, seed=6, init=mx.init.Xavier(magnitude=1))
    sym = get_symbol("resnet10_v2_mini", alpha=0.25, num_classes=10)
    saved = {f"arg:{k}": mx.nd.array(v) for k, v in params.items() if k in sym.list_arguments()}
    saved.update({f"aux:{k}": mx.nd.array(v) for k, v in params.items()
                  if k in sym.list_auxiliary_states()})
    sym.save(str(tmp_path / "release-symbol.json"))
    mx.nd.save(str(tmp_path / "release-0042.params"), saved)
    loaded, config = load_for_scoring(str(tmp_path / "release-symbol.json"))
    x = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (2, 3, 33, 33)))
    assert config == {}
    np.testing.assert_allclose(loaded(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)
