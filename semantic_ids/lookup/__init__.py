"""ID lookup over an export: item <-> semantic ID, prefixes, nearest-code and text search.

- :mod:`.index`: item ids, code tuples and prefixes -> rows (sorted keys, binary search);
- :mod:`.search`: nearest items in code space (:class:`Neighbors`);
- :mod:`.query`: the export's model, read on first need: embeddings and texts -> codes;
- :mod:`.core`: :class:`SemanticIDLookup`, the object that ties them together.
"""

from .core import SemanticIDLookup
from .index import LookupError_, UnknownIDError
from .search import Neighbors

__all__ = ["LookupError_", "Neighbors", "SemanticIDLookup", "UnknownIDError"]
