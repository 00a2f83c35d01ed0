"""Let fairseq read its own checkpoints under torch >= 2.6.

fairseq calls ``torch.load`` without ``weights_only``, and torch >= 2.6 then
refuses any object in the file that is not a tensor or a plain container.
Rather than turning that check off, allow the few plain types that a fairseq
checkpoint holds besides tensors: the legacy ``args`` namespace and the numpy
arrays and scalars of the data iterator's and metrics' state.  Under
data-parallel training fairseq loads the checkpoint on rank 0 and broadcasts
it (``broadcast_object``: ``torch.save`` there, ``torch.load`` on the other
ranks) after turning its config into omegaconf's ``DictConfig``, with its
tensors replaced by placeholders: those types are allowed too.
"""

import argparse
import collections
import typing

import numpy as np
import omegaconf
import torch
from fairseq.distributed.utils import _TensorPlaceholder

NUMPY_DTYPES = ("Int64DType", "Int32DType", "Float64DType", "Float32DType", "BoolDType", "UInt8DType")
OMEGACONF_NODES = ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "EnumNode", "BytesNode",
                   "PathNode")

torch.serialization.add_safe_globals(
    [
        argparse.Namespace,
        np.ndarray,
        np.dtype,
        np._core.multiarray._reconstruct,
        np._core.multiarray.scalar,
        *(getattr(np.dtypes, name) for name in NUMPY_DTYPES),
        # what broadcast_object sends to ranks > 0
        omegaconf.DictConfig,
        omegaconf.ListConfig,
        omegaconf.base.Metadata,
        omegaconf.base.ContainerMetadata,
        *(getattr(omegaconf.nodes, name) for name in OMEGACONF_NODES if hasattr(omegaconf.nodes, name)),
        typing.Any,
        collections.defaultdict,
        dict,
        list,
        int,
        _TensorPlaceholder,
    ]
)
