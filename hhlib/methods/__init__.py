"""Deep hashing methods behind one interface (:class:`Method`), and their registry :data:`METHODS`.

The symmetric family, one network for queries and database: HybridHash's
weighted likelihood, DPSH, DSH, HashNet, DCH, DTSH, DNNH and CNNH; the
asymmetric one, a query network against database codes learned directly:
ADSH; the central-similarity family, codes pulled to a centre per class
(:func:`hash_centres`): CSQ and MDSHC. Each module holds one method;
docs/methods.md compares them.
"""

from __future__ import annotations

from hhlib.methods.adsh import ADSH
from hhlib.methods.base import OUTPUTS, Method, ScaledTanh
from hhlib.methods.centres import hash_centres
from hhlib.methods.cnnh import CNNH
from hhlib.methods.csq import CSQ
from hhlib.methods.dch import DCH
from hhlib.methods.dnnh import DNNH
from hhlib.methods.dpsh import DPSH
from hhlib.methods.dsh import DSH
from hhlib.methods.dtsh import DTSH
from hhlib.methods.hashnet import HashNet
from hhlib.methods.hybridhash import HybridHashLoss
from hhlib.methods.mdshc import MDSHC

__all__ = ["METHODS", "Method", "ScaledTanh", "OUTPUTS", "make_method", "check_method", "hash_centres"]

# name -> class; the command line's --method choices
_ORDER = (HybridHashLoss, DPSH, DSH, HashNet, DCH, DTSH, DNNH, CNNH, ADSH, CSQ, MDSHC)
METHODS: dict[str, type[Method]] = {cls.name: cls for cls in _ORDER}


def check_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return name


def make_method(name: str, bits: int, options: dict | None = None) -> Method:
    """The method ``name`` at ``bits`` bits with ``options`` in place of its defaults.

    An option the method does not take is a ValueError listing those it takes.
    """
    cls = METHODS[check_method(name)]
    unknown = sorted(set(options or {}) - set(cls.defaults()))
    if unknown:
        raise ValueError(f"{name} takes the options {sorted(cls.defaults())}, not {unknown}")
    return cls(bits, **(options or {}))
