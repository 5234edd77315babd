"""score.py against an independent evaluation, and the release checkpoint converter."""
import functools
import json
import math
import os
import re

import cv2
import mxnet as mx
import numpy as np
import pytest

from helpers import randomize, run_script
from octconv.gluon import get_model
from octconv.release import RELEASE, from_release, ReleaseNameError, to_release

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def score(*args):
    return run_script("score.py", *args)


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


# Keys and shapes as the release's code writes them, read off facebookresearch/OctConv:
# "symbol": utils/symbol (BN_ACT_Conv names a conv <layer>_conv, octave paths add -h2h...;
# plain stem/tail BNs; SE as FullyConnected fc1/fc2; arg:/aux: prefixes added below);
# "gluon-names": utils/gluon parameter names (prefix per network);
# "gluon-file": what its train_imagenet.py wrote with save_parameters (attribute paths).
RELEASE_KEYS = {
    ("resnet26_v2", 0.25, "symbol"): {
        "conv1_conv_weight": (64, 3, 7, 7), "conv1_bn_gamma": (64,),
        "conv1_bn_moving_mean": (64,), "L2_B01_conv1_bn-h_gamma": (64,),
        "L2_B01_conv1_conv-h2h_weight": (48, 64, 1, 1),
        "L2_B01_conv1_conv-h2l_weight": (16, 64, 1, 1),
        "L2_B01_conv2_conv-l2l_weight": (16, 16, 3, 3),
        "L2_B01_conv4_conv-h2l_weight": (64, 64, 1, 1),
        "L5_B01_conv1_conv-h2h_weight": (512, 768, 1, 1),
        "L5_B01_conv1_conv-l2h_weight": (512, 256, 1, 1), "L5_B01_conv1_bn-l_gamma": (256,),
        "tail_bn_gamma": (2048,), "tail_bn_moving_var": (2048,),
        "classifier_weight": (1000, 2048)},
    ("se_resnet50_v2", 0.25, "symbol"): {
        "L2_B01_se_fc1-h2h_weight": (16, 192), "L2_B01_se_fc1-l2h_weight": (16, 64),
        "L2_B01_se_fc1-h2h_bias": (16,), "L2_B01_se_fc2-h2h_weight": (192, 16),
        "L2_B01_se_fc2-h2l_weight": (64, 16), "L2_B01_se_fc2-h2l_bias": (64,),
        "L5_B01_se_fc1-h2h_weight": (128, 2048), "L5_B03_se_fc2-h2h_bias": (2048,)},
    ("resnext50_32x4d_v2", 0.5, "symbol"): {
        "L3_B01_conv2_conv-l2h_weight": (128, 4, 3, 3), "L4_B06_conv3_bn-l_moving_var": (256,)},
    ("densenet121", 0.25, "symbol"): {
        "conv1_conv_weight": (64, 3, 7, 7), "conv1_bn_gamma": (64,),
        "L2_B01_conv1_bn-h_gamma": (64,), "L2_B01_conv1_conv-h2h_weight": (96, 64, 1, 1),
        "L2_B01_conv1_conv-h2l_weight": (32, 64, 1, 1),
        "L2_B01_conv2_conv-h2h_weight": (24, 96, 3, 3),
        "L3_Trans_conv_bn-h_gamma": (208,), "L3_Trans_conv_bn-l_moving_mean": (48,),
        "L3_Trans_conv_conv-h2h_weight": (96, 208, 1, 1),
        "L3_Trans_conv_conv-l2l_weight": (32, 48, 1, 1),
        "L5_Trans_conv_conv-h2h_weight": (512, 768, 1, 1),
        "L5_Trans_conv_conv-l2h_weight": (512, 256, 1, 1),
        "tail_bn_gamma": (1024,), "classifier_weight": (1000, 1024)},
    ("mobilenet_v1_075", 0.375, "gluon-names"): {
        "M075_conv1_weight": (24, 3, 3, 3), "M075_bn1_running_var": (24,),
        "M075_L1_B1_conv1-h2h_weight": (24, 1, 3, 3), "M075_L1_B1_conv2-h2l_weight": (18, 24, 1, 1),
        "M075_L2_B0_conv1-l2l_weight": (18, 1, 3, 3), "M075_L2_B0_bn1-l_gamma": (18,),
        "M075_classifier_weight": (1000, 768, 1, 1), "M075_classifier_bias": (1000,)},
    ("mobilenet_v1_075", 0.375, "gluon-file"): {
        "conv1.0.weight": (24, 3, 3, 3), "conv1.1.running_var": (24,),
        "L1_B1.conv1.conv_h2h.weight": (24, 1, 3, 3), "L1_B1.conv2.conv_h2l.weight": (18, 24, 1, 1),
        "L2_B0.conv1.conv_l2l.weight": (18, 1, 3, 3), "L2_B0.bn1.bn_l.gamma": (18,),
        "classifer.weight": (1000, 768, 1, 1), "classifer.bias": (1000,)},
    ("mobilenet_v2_100", 0.375, "gluon-names"): {
        "M100_conv1_weight": (32, 3, 3, 3), "M100_tail-conv_weight": (1280, 320, 1, 1),
        "M100_tail-bn_gamma": (1280,), "M100_L1_B1_conv1-h2l_weight": (12, 32, 1, 1)},
    ("mobilenet_v2_100", 0.375, "gluon-file"): {
        "conv1.0.weight": (32, 3, 3, 3), "conv1.1.beta": (32,),
        "tail.0.weight": (1280, 320, 1, 1), "tail.1.gamma": (1280,),
        "L1_B1.conv1.conv_h2l.weight": (12, 32, 1, 1)},
    ("resnet152_v1f", 0.125, "gluon-names"): {
        "R152_stem_conv1_weight": (8, 3, 3, 3), "R152_stem_bn1_gamma": (8,),
        "R152_stem2_conv2_weight": (32, 32, 3, 3), "R152_stem2_bn4_running_mean": (64,),
        "R152_L1_B0_conv1-h2h_weight": (56, 64, 1, 1), "R152_L1_B0_conv4-h2l_weight": (32, 64, 1, 1),
        "R152_L4_B2_bn3-h_gamma": (2048,), "R152_classifier_weight": (1000, 2048, 1, 1)},
    ("resnet152_v1f", 0.125, "gluon-file"): {
        "conv1.0.weight": (8, 3, 3, 3), "conv1.3.weight": (32, 8, 3, 3), "conv1.7.gamma": (64,),
        "conv2.conv2.weight": (32, 32, 3, 3), "conv2.bn4.running_mean": (64,),
        "L1_B0.conv1.conv_h2h.weight": (56, 64, 1, 1), "L4_B2.bn3.bn_h.gamma": (2048,),
        "classifer.weight": (1000, 2048, 1, 1)},
    ("se_resnet152_v1e", 0.125, "gluon-names"): {
        "R152_stem_conv3_weight": (64, 32, 3, 3), "R152_L1_B0_bn1a-h_gamma": (64,),
        "R152_L1_B0_se-conv1_weight": (16, 256, 1, 1), "R152_L1_B0_se-conv2-l_bias": (32,)},
    ("se_resnet152_v1e", 0.125, "gluon-file"): {
        "conv1.6.weight": (64, 32, 3, 3), "L1_B0.bn1a.bn_h.gamma": (64,),
        "L1_B0.se_block.conv1.weight": (16, 256, 1, 1), "L1_B0.se_block.conv2_l.bias": (32,)},
    ("se_resnet152_v1f", 0.125, "gluon-names"): {  # resnet152_v1f(use_se=True)
        "R152_stem_conv1_weight": (8, 3, 3, 3), "R152_stem2_conv2_weight": (32, 32, 3, 3),
        "R152_L1_B0_bn1a-h_gamma": (64,), "R152_L1_B0_se-conv1_weight": (16, 256, 1, 1),
        "R152_L1_B0_se-conv2-l_bias": (32,), "R152_classifier_weight": (1000, 2048, 1, 1)},
    ("se_resnet152_v1f", 0.125, "gluon-file"): {
        "conv1.0.weight": (8, 3, 3, 3), "conv2.conv2.weight": (32, 32, 3, 3),
        "L1_B0.bn1a.bn_h.gamma": (64,), "L1_B0.se_block.conv1.weight": (16, 256, 1, 1),
        "L1_B0.se_block.conv2_l.bias": (32,), "classifer.weight": (1000, 2048, 1, 1)},
    ("resnet50_v2b", 0.25, "gluon-names"): {
        "R50_conv1_weight": (64, 3, 7, 7), "R50_bn1_gamma": (64,),
        "R50_L1_B0_bn1-h_gamma": (64,), "R50_L1_B0_conv1-h2h_weight": (48, 64, 1, 1),
        "R50_L1_B0_conv4-h2h_bias": (192,), "R50_L1_B0_conv4-h2l_bias": (64,),
        "R50_L4_B2_bn3-h_gamma": (512,), "R50_tail-bn_gamma": (2048,),
        "R50_classifier_weight": (1000, 2048, 1, 1)},
    ("resnet50_v2b", 0.25, "gluon-file"): {
        "conv1.0.weight": (64, 3, 7, 7), "conv1.1.gamma": (64,),
        "L1_B0.conv4.conv_h2l.bias": (64,), "L4_B2.bn3.bn_h.gamma": (512,),
        "tail.0.gamma": (2048,)},
    ("densenet121_octstem", 0.25, "gluon-names"): {
        "D121_conv1-h2h_weight": (48, 3, 7, 7), "D121_conv1-h2l_weight": (16, 3, 7, 7),
        "D121_bn1-l_gamma": (16,), "D121_L1_B0_bn1-h_gamma": (48,),
        "D121_L1_B0_conv1-h2h_weight": (96, 48, 1, 1), "D121_L2_B0_bn-h_gamma": (192,),
        "D121_L2_B0_conv-h2h_weight": (96, 192, 1, 1), "D121_L2_B1_conv2-l2l_weight": (8, 32, 3, 3),
        "D121_tail-bn_gamma": (1024,), "D121_classifier_weight": (1000, 1024, 1, 1)},
    ("densenet121_octstem", 0.25, "gluon-file"): {
        "conv1.conv_h2h.weight": (48, 3, 7, 7), "bn1.bn_l.gamma": (16,),
        "L2_B0.bn.bn_h.gamma": (192,), "L2_B0.conv.conv_h2h.weight": (96, 192, 1, 1),
        "tail.0.gamma": (1024,), "classifer.bias": (1000,)},
}


def as_file(release, form):
    """Symbol checkpoints hold arg: and aux: keys (moving statistics are aux)."""
    if form != "symbol":
        return release
    return {("aux:" if "_moving_" in k else "arg:") + k: v for k, v in release.items()}


@functools.lru_cache(maxsize=1)  # the cases of one network are adjacent
def random_network(model, alpha):
    """``({name: shape}, {name: array})`` of ``model`` with random weights."""
    net = get_model(model, alpha=alpha)
    params = randomize(net, seed=3, init=mx.init.Xavier(magnitude=1))
    return {n: p.shape for n, p in net.collect_params().items()}, params


@pytest.mark.parametrize("model, alpha, form", sorted(RELEASE_KEYS))
def test_release_names_map_completely_and_round_trip(model, alpha, form):
    expected, params = random_network(model, alpha)
    release = to_release(params, model, form)
    for key, shape in RELEASE_KEYS[(model, alpha, form)].items():
        assert release[key].shape == shape, key
    assert sum(v.size for v in release.values()) == sum(v.size for v in params.values())
    back = from_release(as_file(release, form), model, expected)
    assert set(back) == set(params)
    assert all(np.array_equal(back[n], params[n]) for n in params)
    extra = {"symbol": "arg:fc_weight", "gluon-names": RELEASE[model][1] + "fc_weight",
             "gluon-file": "fc.weight"}[form]
    with pytest.raises(ReleaseNameError, match=r"fc.weight has no place in .*\(1 left over\)"):
        from_release({**as_file(release, form), extra: np.zeros(3)}, model, expected)
    missing = next(iter(release))
    with pytest.raises(ReleaseNameError, match=f"lacks {re.escape(missing)}"):
        from_release(as_file({k: v for k, v in release.items() if k != missing}, form),
                     model, expected)


def test_release_map_covers_every_release_network_in_its_form():
    from octconv.release import release_map
    from octconv.symbol import get_symbol
    for model, (api, _, _) in sorted(RELEASE.items()):
        sym = get_symbol(model, alpha=0.25)
        args, _, aux = sym.infer_shape(data=(1, 3, 224, 224), softmax_label=(1,))
        shapes = dict(zip(sym.list_arguments(), args))
        shapes.update(zip(sym.list_auxiliary_states(), aux))
        del shapes["data"], shapes["softmax_label"]
        for form in (("symbol",) if api == "symbol" else ("gluon-names", "gluon-file")):
            keys = [p.key for pieces in release_map(model, shapes, form).values() for p in pieces]
            assert len(keys) == len(set(keys)), (model, form)


def test_release_baseline_checkpoint_is_named_as_such():
    net = get_model("resnet26_v2", alpha=0.0)
    expected = {n: p.shape for n, p in net.collect_params().items()}
    baseline = {"arg:L2_B01_conv1_conv_weight": np.zeros((64, 64, 1, 1)),
                "aux:L2_B01_conv1_bn_moving_mean": np.zeros(64)}
    with pytest.raises(ReleaseNameError, match="baseline .* score its -symbol.json directly"):
        from_release(baseline, "resnet26_v2", expected)


@pytest.mark.parametrize("model, alpha, form", [("mobilenet_v1_075", 0.375, "gluon-file"),
                                                ("se_resnet50_v2", 0.25, "symbol")])
def test_release_file_round_trip_scores_identically(digits, tmp_path, model, alpha, form):
    """Our weights written as a release parameter file, scored back through the converter."""
    net = get_model(model, alpha=alpha, classes=10)
    params = randomize(net, seed=4, init=mx.init.Xavier(magnitude=1))
    mx.nd.save(str(tmp_path / "release.params"),
               {k: mx.nd.array(v) for k, v in as_file(to_release(params, model, form),
                                                       form).items()})
    from octconv.scoring import load_for_scoring
    loaded, _ = load_for_scoring(str(tmp_path / "release.params"), model, alpha, 10)
    x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (2, 3, 97, 97)))
    np.testing.assert_array_equal(loaded(x).asnumpy(), net(x).asnumpy())


def test_converted_release_checkpoint_scores_by_its_path_alone(tmp_path):
    model, alpha = "se_resnet50_v2", 0.25
    net = get_model(model, alpha=alpha, classes=10)
    params = randomize(net, seed=5, init=mx.init.Xavier(magnitude=1))
    release = tmp_path / "se-resnet-50-0100.params"
    mx.nd.save(str(release), {k: mx.nd.array(v) for k, v in
                              as_file(to_release(params, model, "symbol"), "symbol").items()})
    run = functools.partial(run_script, "tools/convert_release.py")
    out = run(release, "--model", model, "--alpha", alpha, "--classes", 10, "--out",
              tmp_path / "converted")
    assert out.returncode == 0, out.stderr[-2000:]
    from octconv.scoring import load_for_scoring
    loaded, config = load_for_scoring(str(tmp_path / "converted"))
    # docs/ARCHITECTURES.md 4.3: the Symbol checkpoints' test recipe
    assert config["DATA"]["interp"] == "bicubic" and config["DATA"]["mean"] == [124, 117, 104]
    x = mx.nd.array(np.random.RandomState(2).uniform(-1, 1, (2, 3, 65, 65)))
    np.testing.assert_array_equal(loaded(x).asnumpy(), net(x).asnumpy())

    ours = tmp_path / "ours.params"
    mx.nd.save(str(ours), {k: mx.nd.array(v) for k, v in params.items()})
    out = run(ours, "--model", model, "--alpha", alpha, "--out", tmp_path / "x")
    assert out.returncode == 2 and "none of the release's layouts for se_resnet50_v2" in out.stderr
    out = run(release, "--model", "resnet10_v2_mini", "--alpha", 0.25, "--out", tmp_path / "x")
    assert out.returncode == 2 and "the release published no 'resnet10_v2_mini'" in out.stderr


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
