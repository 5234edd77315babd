"""One distribution, import name ``octconv``: octconv/ is the shared core, and the
top-level symbol/ and gluon/ folders install as octconv.symbol and octconv.gluon."""
from setuptools import setup

setup(
    name="octconv",
    version="0.1.0",
    description="Octave Convolution (Drop an Octave, ICCV 2019) for MXNet Symbol and Gluon, "
                "with a TVM deployment path",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.12",
    packages=["octconv", "octconv.symbol", "octconv.gluon"],
    package_dir={"octconv": "octconv", "octconv.symbol": "symbol", "octconv.gluon": "gluon"},
    install_requires=[
        "numpy==1.23.5",   # mxnet 1.9.1 uses aliases removed in numpy 1.24
        "mxnet==1.9.1",    # CPU build with oneDNN; GPU users swap in mxnet-cu112==1.9.1
    ],
    extras_require={
        "test": ["pytest==9.2.0"],
    },
)
