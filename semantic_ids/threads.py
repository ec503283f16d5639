"""The native thread pools (torch's OpenMP and MKL, FAISS's OpenMP and BLAS) during a build.

Two facts about them, one function each:

- :func:`fixed_threads`: training's weight gradients are matrix products whose
  batch-dimension sums the BLAS splits by thread, so the same data, config and
  seed train different weights (and IDs) on 1 and 2 threads. A build trains
  with a fixed thread count (``train.threads``, recorded in the config) so that
  its IDs do not depend on the machine's core count. Encoding is already
  thread-independent (one thread per chunk, :mod:`semantic_ids.stages.encode`),
  and the forward pass, k-means and the embeddings measured so too.
- :func:`passive_torch_import`: OpenMP threads spin while they wait for work
  (``OMP_WAIT_POLICY`` unset), which slows training's many small ops several
  times when another process shares the cores (``benchmarks/api_threads.py``).
  The runtime reads the policy once, when torch loads it. The command line sets
  the variable for its own process; a Python caller's process keeps its
  environment: the package sets ``OMP_WAIT_POLICY=PASSIVE`` only while torch
  is first imported (if the process has not chosen a policy and torch is not
  loaded yet), then removes it again. Passive waiting changes no result.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys
from collections.abc import Iterator

POLICY = "OMP_WAIT_POLICY"


@contextlib.contextmanager
def fixed_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads and at most ``n`` threads in every OpenMP
    and BLAS pool loaded (FAISS's included); restore them after. ``n = 0``: as they are.

    The environment is restored too: libraries first loaded in the block set variables
    as they import (torch's optimizer its inductor cache directory, threadpoolctl
    ``KMP_DUPLICATE_LIB_OK``), and a caller's process keeps the environment it had."""
    env = dict(os.environ)
    try:
        if n <= 0:
            yield
            return
        import torch
        from threadpoolctl import threadpool_limits

        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            with threadpool_limits(n):
                yield
        finally:
            torch.set_num_threads(before)
    finally:
        _restore_environ(env)


def _restore_environ(env: dict[str, str]) -> None:
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


class _PassiveLoader(importlib.abc.Loader):
    """Wraps torch's loader: the policy is in the environment only while torch executes."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        os.environ[POLICY] = "PASSIVE"
        try:
            self.loader.exec_module(module)
        finally:
            os.environ.pop(POLICY, None)


class _PassiveFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; gives torch's own spec the wrapped loader, once."""

    def find_spec(self, name, path, target=None):
        if name != "torch":
            return None
        uninstall_passive_import()
        if POLICY in os.environ:  # the process chose a policy meanwhile: keep it
            return None
        from importlib.util import find_spec

        spec = find_spec(name)  # the other finders' answer (this one is removed)
        if spec is not None and spec.loader is not None:
            spec.loader = _PassiveLoader(spec.loader)
        return spec


_FINDER = _PassiveFinder()


def passive_torch_import() -> bool:
    """Arrange for torch's first import to load OpenMP with passive waiting (see the
    module docstring). Does nothing if torch is loaded or the process set a policy;
    returns whether it arranged it."""
    if "torch" in sys.modules or POLICY in os.environ or _FINDER in sys.meta_path:
        return False
    sys.meta_path.insert(0, _FINDER)
    return True


def uninstall_passive_import() -> None:
    """Remove the import hook (it also removes itself when torch is found)."""
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_FINDER)
