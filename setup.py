"""coopseg: cooperative segmentation + classification learning (JointSeg, DecoupledNet)."""
from setuptools import find_packages, setup

# Pinned to the newest set in which all of these work together: TFA cannot be imported
# on TF >= 2.16, and opencv 4.12 needs numpy 2, which TF 2.15 does not support.
INSTALL_REQUIRES = [
    "tensorflow==2.15.1",
    "tensorflow-addons==0.23.0",
    "numpy>=1.23,<2",
    "opencv-python>=4.8,<4.12",
    "absl-py>=1.0",
]

setup(
    name="coopseg",
    version="0.1.0",
    description="Cooperative segmentation + classification learning (JointSeg) and DecoupledNet in TF/Keras",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9,<3.12",
    packages=find_packages(include=["coopseg", "coopseg.*", "data_pipelines", "data_pipelines.*",
                                    "experiments", "experiments.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3.5"]},
    entry_points={
        "console_scripts": [
            "coopseg-train=coopseg.cli.train:run",
            "coopseg-evaluate=coopseg.cli.evaluate:run",
            "coopseg-export=coopseg.cli.export:run",
            "coopseg-predict=coopseg.cli.predict:run",
            "coopseg-convert=coopseg.cli.convert:run",
            "coopseg-synth=data_pipelines.synthetic:run",
            "coopseg-synth-voc=data_pipelines.synthetic_voc:run",
        ],
    },
)
