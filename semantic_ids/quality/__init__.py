"""Measuring IDs: intrinsic evaluation, churn between exports, the HTML report and the downstream
generative-retrieval benchmark. Imports ``lookup``, ``decoding``, ``runners`` and below."""
