"""Datasets and retrieval protocols (docs/DESIGN.md, "Protocols").

One module per idea:

- :mod:`~hhlib.data.protocols`: the query / train / database protocols,
  :func:`split_protocol` and the saveable :class:`Split`;
- :mod:`~hhlib.data.sources`: where datasets live, downloads, and the
  Fashion-MNIST (IDX), CIFAR-10 and digits readers;
- :mod:`~hhlib.data.transforms`: the paper's transforms and the tensor
  pipeline of the small-image presets;
- :mod:`~hhlib.data.memory`: splits of datasets held in memory as uint8;
- :mod:`~hhlib.data.listfile`: DeepHash-pytorch list-file datasets;
- :mod:`~hhlib.data.registry`: :data:`DATASETS` and :func:`get_dataset`.

Typical use::

    from hhlib.data import get_dataset
    data = get_dataset("fashion-mnist")          # 5,000 / 1,000 / 64,000
    image, label_vector, index = data.train[0]  # (3, 32, 32), (10,), 0
"""

from hhlib.data.errors import DataFormatError, DatasetNotFoundError, ImageDecodeError, SplitMismatchError
from hhlib.data.listfile import ListFileDataset, make_split_lists, parse_label_file
from hhlib.data.memory import InMemorySplit
from hhlib.data.protocols import PROTOCOLS, Protocol, Split, split_protocol
from hhlib.data.registry import DATASETS, DatasetInfo, RetrievalData, get_dataset
from hhlib.data.sources import read_idx

__all__ = [
    "DATASETS",
    "PROTOCOLS",
    "DataFormatError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "ImageDecodeError",
    "InMemorySplit",
    "ListFileDataset",
    "Protocol",
    "RetrievalData",
    "Split",
    "SplitMismatchError",
    "get_dataset",
    "make_split_lists",
    "parse_label_file",
    "read_idx",
    "split_protocol",
]
