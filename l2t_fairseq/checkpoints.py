"""Let fairseq read its own checkpoints under torch >= 2.6.

fairseq calls ``torch.load`` without ``weights_only``, and torch >= 2.6 then
refuses any object in the file that is not a tensor or a plain container.
Rather than turning that check off, allow the few plain types that a fairseq
checkpoint holds besides tensors: the legacy ``args`` namespace and the numpy
arrays and scalars of the data iterator's and metrics' state.
"""

import argparse

import numpy as np
import torch

NUMPY_DTYPES = ("Int64DType", "Int32DType", "Float64DType", "Float32DType", "BoolDType", "UInt8DType")

torch.serialization.add_safe_globals(
    [
        argparse.Namespace,
        np.ndarray,
        np.dtype,
        np._core.multiarray._reconstruct,
        np._core.multiarray.scalar,
        *(getattr(np.dtypes, name) for name in NUMPY_DTYPES),
    ]
)
