"""The package's errors: one base, :class:`SemanticIDsError`, meaning "the user erred".

Every error the library raises because of its input (a missing or malformed
file, a bad option or config value, an export that does not fit the request)
is a :class:`SemanticIDsError`. Any other exception (a ``KeyError``,
``ValueError`` or ``RuntimeError`` that is not one) is a bug: in the library, in
a dependency, or in calling code that hands a low-level function arrays of the
wrong shape (e.g. logits to the decoding helpers). One ``except`` tells the user's
errors apart, as scikit-learn's ``sklearn.exceptions`` allows::

    try:
        build(out, catalog=path)
    except SemanticIDsError as exc:  # bad input: show the message, no traceback
        ...

The command line catches only this class (the message on stderr, exit status
2); anything else propagates with its traceback.

Each concrete class also keeps its builtin base (``CatalogError`` is a
``ValueError``, ``UnknownIDError`` a ``KeyError``, ``NotFittedError`` a
``RuntimeError``, ``MissingExtraError`` an ``ImportError``), so an
``except ValueError`` written before this base existed keeps working.

The classes are defined here, in a module that imports nothing, so any layer
can raise any of them and the command line catches them without loading torch;
each is also importable from the module that raises it
(``semantic_ids.stages.catalog.CatalogError`` and so on) and from the package
(``semantic_ids.CatalogError``).
"""

from __future__ import annotations


class SemanticIDsError(Exception):
    """The user erred: bad input, not a bug.

    Raised (through a subclass) for a missing or malformed input file, an invalid
    option or config value, or an export that does not fit the request; the
    message names the offending path, column, item or value. The command line
    prints it without a traceback and exits with status 2. Catch this to handle
    every user error at once; anything else the library raises is a bug.
    """


class ConfigError(SemanticIDsError, ValueError):
    """A config value or key is invalid, or options do not go together; the message names the
    field or option."""


class CatalogError(SemanticIDsError, ValueError):
    """The catalog cannot be used; the message names the file, column, rows or values."""


class EmbeddingError(SemanticIDsError, ValueError):
    """Embeddings are missing, of the wrong shape, or not finite."""


class SequenceError(SemanticIDsError, ValueError):
    """A sequences file is missing, malformed, or names items the catalog does not have."""


class TokenError(SemanticIDsError, ValueError):
    """A token string is malformed."""


class OutputPathError(SemanticIDsError, ValueError):
    """The output path holds something this tool did not write; nothing was changed."""


class ExportError(SemanticIDsError, ValueError):
    """An export directory is missing, damaged, from an incompatible version, or does not fit
    the request (e.g. a previous export whose model differs from this build's)."""


class UnknownIDError(SemanticIDsError, KeyError):
    """An item id or semantic ID is unknown (a KeyError, so ``except KeyError`` works)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class VocabError(SemanticIDsError, ValueError):
    """Codes or token ids that do not fit a vocabulary, or a vocabulary that is malformed."""


class TrieError(SemanticIDsError, ValueError):
    """Codes that cannot form a trie (duplicate IDs, bad shapes), or a damaged trie file."""


class DecodingFilesError(SemanticIDsError, ValueError):
    """The output directory holds files this tool did not write, or the request is malformed;
    nothing was changed."""


class NotFittedError(SemanticIDsError, RuntimeError):
    """The estimator was used before ``fit`` or ``load``."""


class ReportError(SemanticIDsError, ValueError):
    """The report cannot be written: a bad output directory or baselines file."""


class MissingExtraError(SemanticIDsError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra to install (e.g. ``pip install 'semantic-ids[report]'``)."""


class MissingIdError(SemanticIDsError, ValueError):
    """Item ids that a mapping does not hold (``rows_of(..., missing="raise")``); ``ids`` lists them."""

    def __init__(self, message: str, ids: list):
        super().__init__(message)
        self.ids = ids


class DuplicateIdError(SemanticIDsError, ValueError):
    """A list of item ids that should be unique repeats some (the message names them)."""
