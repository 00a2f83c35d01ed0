from setuptools import find_packages, setup

setup(
    name="l2t-fairseq",
    version="0.1.0",
    description="Learning to Teach with Dynamic Loss Functions (NeurIPS 2018) for fairseq",
    packages=find_packages(include=["l2t_fairseq", "l2t_fairseq.*"]),
    python_requires=">=3.10",
    # fairseq-fixed and torch are installed by scripts/setup.sh: fairseq's own
    # metadata asks for torchaudio, which drags in a CUDA torch.
    install_requires=[],
)
