"""One distribution, import name ``octconv``: octconv/ is the shared core, and the
top-level symbol/ and gluon/ folders install as octconv.symbol and octconv.gluon."""
from setuptools import setup

TRAIN = [                                 # training progress and curves, the demo data
    "opencv-python-headless==4.11.0.86",
    "scikit-learn==1.7.2",                # the demo's digits
    "tqdm==4.70.1",
    "matplotlib==3.10.9",
]
DEPLOY = [                                # ONNX export, TVM, the timed backends
    "onnx==1.15.0",                       # mx.onnx needs onnx.mapping, gone after 1.15
    "onnxruntime==1.31.1",
    "openvino==2026.4.1",                 # reads the ONNX export; a fourth timed backend
    "apache-tvm==0.27.0.post1",           # Relax; no Relay, no MXNet frontend
    "apache-tvm-ffi==0.1.14.post1",       # 0.1.15.post2 segfaults inside TVM
]

setup(
    name="octconv",
    version="0.1.0",
    description="Octave Convolution (Drop an Octave, ICCV 2019) for MXNet Symbol and Gluon, "
                "with a TVM deployment path",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.12",
    packages=["octconv", "octconv.deploy", "octconv.symbol", "octconv.gluon"],
    package_dir={"octconv": "octconv", "octconv.symbol": "symbol", "octconv.gluon": "gluon"},
    package_data={"octconv.deploy": ["hugepages.c"]},  # linked into every compiled library
    # The core (both APIs, the zoo, counting) needs three packages; the rest is by use.
    install_requires=[
        "numpy==1.23.5",                  # mxnet 1.9.1 uses aliases removed in numpy 1.24
        "mxnet==1.9.1",                   # CPU, oneDNN; GPU users install mxnet-cu112==1.9.1
        "pyyaml==6.0.3",
    ],
    extras_require={
        "train": TRAIN,
        "deploy": DEPLOY,
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "hypothesis==6.170.15",
                 "gluoncv==0.10.5.post0"]
        + TRAIN + DEPLOY,
    },
)
