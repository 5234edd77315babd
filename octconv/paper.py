"""Figures printed in the paper (Chen et al., "Drop an Octave", ICCV 2019), for the
complexity table and the tests: ``(name, alpha) -> (table, params in millions, FLOPs,
unit of the FLOPs)``, the unit "G" for Tables 2, 4, 5 and "M" for Table 3, figures as
printed (rounded); ``VIDEO_FIGURES``: ``(name, alpha) -> GFLOPs per clip`` of Table 6."""

PAPER_FIGURES = {
    # Table 2: ResNet-50 on ImageNet, alpha .125 to .75 (parameters from Table 4).
    ("resnet50_v2", 0.0): ("Table 2", 25.6, 4.1, "G"),
    ("resnet50_v2", 0.125): ("Table 2", 25.6, 3.6, "G"),
    ("resnet50_v2", 0.25): ("Table 2", 25.6, 3.1, "G"),
    ("resnet50_v2", 0.5): ("Table 2", 25.6, 2.4, "G"),  # also Table 4, same figures
    ("resnet50_v2", 0.75): ("Table 2", 25.6, 1.9, "G"),
    # Table 3: small models.
    ("mobilenet_v1_075", 0.0): ("Table 3", 2.6, 325, "M"),
    ("mobilenet_v1_075", 0.375): ("Table 3", 2.6, 213, "M"),
    ("mobilenet_v1_100", 0.5): ("Table 3", 4.2, 321, "M"),
    ("mobilenet_v2_100", 0.0): ("Table 3", 3.5, 300, "M"),
    ("mobilenet_v2_100", 0.375): ("Table 3", 3.5, 256, "M"),
    ("mobilenet_v2_1125", 0.5): ("Table 3", 4.2, 295, "M"),
    # Table 4: medium models.
    ("resnet26_v2", 0.25): ("Table 4", 16.0, 1.9, "G"),
    ("resnext50_32x4d_v2", 0.25): ("Table 4", 25.0, 3.2, "G"),
    ("resnext50_32x4d_v2", 0.5): ("Table 4", 25.0, 2.4, "G"),
    ("resnext101_32x4d_v2", 0.25): ("Table 4", 44.2, 5.7, "G"),
    ("resnext101_32x4d_v2", 0.5): ("Table 4", 44.2, 4.0, "G"),
    # Table 5: large models.
    ("resnet152_v1f", 0.125): ("Table 5", 60.2, 10.9, "G"),
    ("se_resnet152_v1e", 0.125): ("Table 5", 66.8, 10.9, "G"),
}

# Table 6: video networks on Kinetics-400, GFLOPs per clip; no parameter counts printed.
# The counting rule that gives the baselines (docs/ARCHITECTURES.md, section 6.2):
# multiply-adds of convolutions and the classifier, an 8-frame clip at 224 x 224.
VIDEO_FIGURES = {
    ("c2d_resnet50", 0.0): 19.3,
    ("c2d_resnet50", 0.1): 17.4,
    ("i3d_resnet50", 0.0): 28.1,
    ("i3d_resnet50", 0.1): 25.6,
    ("i3d_resnet50", 0.2): 22.1,
    ("i3d_resnet50", 0.5): 15.3,
    ("i3d_nl_resnet50", 0.0): 33.3,
    ("i3d_nl_resnet50", 0.1): 28.9,
    ("slowfast_resnet50", 0.0): 27.6,
    ("slowfast_resnet50", 0.1): 24.5,
    ("slowfast_resnet50", 0.2): 22.9,
}
