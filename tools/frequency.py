#!/usr/bin/env python
"""Fourier energy of the high- and low-frequency groups of a trained network (Fig. 4).

    python tools/frequency.py runs/demo --data runs/digits/val --size 64 --out results/frequency
    python tools/frequency.py model.params --model resnet50_v2 --alpha 0.5 --data val.rec \\
        --layers L2_B02_conv2,L3_B02_conv2 --out freq

Records the (hi, lo) outputs of OctConv layers on the first --images center-cropped
images, and writes to --out: frequency.json (per layer and group, the share of energy
above each radius, in cycles per pixel of the high-resolution map; see
octconv/frequency.py for the method) and frequency.png (the averaged centered log
spectra of each group, and the share of energy above r against r).
"""
import json
import os
import sys

from octconv.cli import (ArgumentParser, add_checkpoint_arguments, command, output_folder,
                         positive_int)
from octconv.files import write_atomically


def default_layers(all_layers, count=3):
    """``count`` layers spread evenly over ``all_layers`` (first and last included)."""
    if len(all_layers) <= count:
        return list(all_layers)
    return [all_layers[round(i * (len(all_layers) - 1) / (count - 1))] for i in range(count)]


def plot(pairs, report, path):
    """One row per layer: log spectra of the high and the low group on the same
    frequency axes, then the share of energy above r for both."""
    import numpy as np
    from octconv.figures import pyplot, save_png
    from octconv.frequency import energy_above, power_spectrum

    fig, axes = pyplot().subplots(len(pairs), 3, figsize=(11, 3.4 * len(pairs)), squeeze=False)
    radii = np.linspace(0, 0.5, 41)
    for row, (layer, (hi, lo)) in zip(axes, pairs.items()):
        curves = {}
        for ax, group, maps, scale in ((row[0], "high", hi, 1), (row[1], "low", lo, 2)):
            power = power_spectrum(maps)
            fy, fx = (np.fft.fftshift(np.fft.fftfreq(n)) / scale for n in power.shape)
            dy, dx = 0.5 / (scale * power.shape[0]), 0.5 / (scale * power.shape[1])
            ax.imshow(np.log10(power + 1e-12 * power.max() + 1e-30), cmap="viridis",
                      extent=(fx[0] - dx, fx[-1] + dx, fy[0] - dy, fy[-1] + dy),
                      origin="lower")
            ax.set_xlim(-0.5, 0.5)
            ax.set_ylim(-0.5, 0.5)
            h, w = report[layer][group]["size"]
            ax.set_title(f"{layer}: {group} ({h}x{w})", fontsize=9)
            ax.set_xlabel("cycles / high-res pixel")
            curves[group] = [energy_above(power, r, scale) for r in radii]
        for group, values in curves.items():
            row[2].plot(radii, values, label=group)
        row[2].set_xlabel("radius r (cycles / high-res pixel)")
        row[2].set_ylabel("share of energy above r")
        row[2].legend()
        row[2].grid(alpha=0.3)
    save_png(fig, path)


@command
def main(argv=None):
    parser = ArgumentParser(__doc__)
    add_checkpoint_arguments(parser, "run folder, manifest .json or .params")
    parser.add_argument("--size", type=positive_int, help="test size (default: the trained one)")
    parser.add_argument("--images", type=positive_int, default=64, help="images to average")
    parser.add_argument("--layers", help="OctConv layers, comma-separated (default: three "
                                         "spread over the network)")
    parser.add_argument("--out", required=True, help="folder for frequency.json and .png")
    args = parser.parse_args(argv)
    output_folder(args.out, "--out")
    import mxnet as mx
    from octconv.frequency import analyze, octave_layers, record_pairs
    from octconv.scoring import center_crop_batches, load_for_scoring

    net, config = load_for_scoring(args.checkpoint, args.model, args.alpha, args.classes)
    available = octave_layers(net)
    if not available:
        raise ValueError(f"{args.checkpoint}: the network has no layer with a "
                         f"low-frequency output (alpha 0?)")
    layers = args.layers.split(",") if args.layers else default_layers(available)
    data_cfg = config.get("DATA", {})
    size = args.size or data_cfg.get("size", 224)
    kind = "rec" if args.data.endswith(".rec") else "folder"
    images = []
    for data, _ in center_crop_batches(args.data, kind, size, None, data_cfg).epoch(0, 0):
        images.append(data)
        if sum(len(x) for x in images) >= args.images:
            break
    x = mx.nd.concat(*images, dim=0)[:args.images]
    pairs = record_pairs(net, x, layers)
    report = dict(checkpoint=args.checkpoint, data=args.data, size=size,
                  images=int(x.shape[0]), layers=analyze(pairs))
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "frequency.json")
    write_atomically(json_path, lambda tmp: json.dump(report, open(tmp, "w"), indent=1))
    plot(pairs, report["layers"], os.path.join(args.out, "frequency.png"))
    print(f"{'layer':24s} {'group':5s} {'size':>7s}  share of energy above r "
          f"(cycles / high-res px)")
    for layer, groups in report["layers"].items():
        for group, stats in groups.items():
            shares = "  ".join(f"{r}: {v:.3f}" for r, v in stats["above"].items())
            print(f"{layer:24s} {group:5s} {'x'.join(map(str, stats['size'])):>7s}  {shares}")
    print(f"wrote {json_path} and frequency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
