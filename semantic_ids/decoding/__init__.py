"""Decoding layer: token vocabulary, prefix trie, constrained decoding, HF adapter, export formats.

A generative recommender (TIGER, Rajput et al. 2023) emits an item's semantic ID
one level at a time; this package keeps every generated ID valid. Modules:

- :mod:`.vocab`     ``SIDVocab``: one token per (level, code), token ids <-> codes
- :mod:`.trie`      ``PrefixTrie``: all valid IDs as flat tensors (dense + CSR levels)
- :mod:`.constrain` batched logit masking over one level or the whole ID vocabulary
- :mod:`.hf`        Hugging Face ``generate`` adapters (imports transformers on first use;
                    not imported here)
- :mod:`.formats`   files other trainers and serving engines read (sid2pid.json, codes.npy, ...)
"""

from .constrain import mask_logits, mask_vocab_logits
from .formats import DecodingFilesError, verify_decoding_files, write_decoding_files
from .trie import PrefixTrie, TrieError
from .vocab import SIDVocab, VocabError

__all__ = [
    "DecodingFilesError",
    "PrefixTrie",
    "SIDVocab",
    "TrieError",
    "VocabError",
    "mask_logits",
    "mask_vocab_logits",
    "verify_decoding_files",
    "write_decoding_files",
]
