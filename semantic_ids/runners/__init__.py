"""What runs the stages: the in-memory estimator (``estimator``), the streaming runner (``streaming``)
and its Ray engine (``ray``), the one entry point ``build``, and ``assign`` (new items against a frozen
export). Imports ``stages`` and below."""
