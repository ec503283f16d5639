"""Command line: ``semantic-ids build ...`` (also ``python -m semantic_ids``).

A subcommand is a parser function here (``_parser_NAME``) plus a handler in
:mod:`semantic_ids.commands` (``cmd_NAME``) that imports its heavy modules
itself: this module imports only the standard library and the handlers' light
module, so ``--help`` and bad input answer without loading torch or
sentence-transformers.

Exit codes: 0 success; 1 ``lookup`` found no item for at least one item id,
semantic ID or prefix (every query is still reported, misses marked); 2 bad input: a
:class:`~semantic_ids.errors.SemanticIDsError` (the message says why, no
traceback); 130 interrupted; 141 the reader of stdout left early
(``semantic-ids lookup ... | head -1``), quietly. Any other exception is a bug:
it propagates with its traceback (Python's status 1).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import select
import sys

from . import commands
from ..errors import SemanticIDsError

EXIT_USER_ERROR = 2  # a SemanticIDsError: bad input, the message says why
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


def _at_least(low: int):
    """An argparse type: an integer >= ``low`` (else argparse's usage error, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} should be >= {low}")
        return value

    parse.__name__ = "int"
    return parse


def _add_quality_inputs(p: argparse.ArgumentParser) -> None:
    """What ``evaluate`` and ``report`` read beside the catalog."""
    p.add_argument("--sequences", help="JSON Lines of user sequences: {\"user_id\": ..., \"items\": [ids in time order]}")
    p.add_argument("--embeddings", help="embeddings of the catalog for neighbour coherence (default: computed with the export's model)")
    p.add_argument("--category-column", help="label column for purity/NMI (default: categories/category/genres if present)")


def _parser_build(sub) -> None:
    b = sub.add_parser("build", help="catalog -> embeddings -> RQ-VAE -> unique semantic IDs -> export DIR")
    b.add_argument("--catalog", help="catalog file: .parquet, .csv or .jsonl (Parquet only with --streaming)")
    b.add_argument("--out", required=True, help="export directory: new, empty, or an earlier export (replaced atomically); "
                   "anything else is refused before any work")
    b.add_argument("--config", help="TOML config file (sections: catalog, embedding, model, train, collision, collab, experimental)")
    b.add_argument("--id-column", help="id column (default item_id)")
    b.add_argument("--text-columns", help="comma-separated columns that make the item text")
    b.add_argument("--template", help='text template, e.g. "Title: {title}; Brand: {brand}"')
    b.add_argument("--embeddings", help="precomputed embeddings (.parquet keyed by id, .npy in catalog order, .npz)")
    b.add_argument("--model", help="sentence-transformers model name or path")
    b.add_argument("--sequences", help="JSON Lines of user sequences ({\"user_id\": ..., \"items\": [ids in time order]}): "
                   "fuse what users do with what items say (config section [collab])")
    b.add_argument("--holdout-last", type=int, help="with --sequences: leave each user's last N items out of the signal "
                   "(2 for IDs evaluated with evaluate --downstream)")
    b.add_argument("--previous", metavar="DIR", help="an earlier export to warm-start from: retrain on this catalog "
                   "from its model and keep its items' IDs where the new model agrees (docs/warmstart.md); "
                   "--out may be DIR itself")
    b.add_argument("--seed", type=int)
    b.add_argument("--epochs", type=int, help="training epochs (overrides the config)")
    b.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    b.add_argument("--no-progress", action="store_true", help="hide progress bars")
    b.add_argument(
        "--streaming",
        action="store_true",
        help="bounded-memory build for large catalogs: Parquet batches, sharded embeddings, on-disk resolution "
        "(with --embeddings: a Parquet file or directory of shards with the id and an 'embedding' column)",
    )
    b.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="run embed, encode and (with --sequences) the co-occurrence counts as Ray Data jobs (implies --streaming)")
    b.add_argument("--ray-address", help="Ray cluster address, e.g. auto or ray://head:10001 (default: start a local Ray)")
    b.add_argument("--work-dir", help="where a streaming build keeps shards (default: the cache dir's stream/)")
    b.add_argument("--batch-rows", type=int, default=65536, help="rows per batch in a streaming build (default 65536)")
    b.set_defaults(func=commands.cmd_build)


def _parser_lookup(sub) -> None:
    lk = sub.add_parser(
        "lookup", help="look up IDs in an export: by item, semantic ID, prefix or text",
        epilog="exit status: 0 every query matched; 1 at least one item id, semantic ID or prefix matched no item (every "
        "query is still reported, misses marked NOT FOUND, or \"found\": false with --json); 2 bad input (e.g. a malformed ID)",
    )
    lk.add_argument("dir", help="export directory")
    q = lk.add_mutually_exclusive_group(required=True)
    q.add_argument("--item", nargs="+", help="item id(s) -> semantic ID (with --k: nearest items in code space)")
    q.add_argument("--sid", nargs="+", help="semantic ID(s) -> item (with --k: nearest valid items, for generated codes)")
    q.add_argument("--prefix", help="a semantic-ID prefix, e.g. '<a_12><b_200>' -> items under it and their count")
    q.add_argument("--text", nargs="+", help="text(s) -> codes under the frozen model and the k nearest items")
    lk.add_argument("--k", type=_at_least(1), help="number of nearest items")
    lk.add_argument("--catalog", help="the catalog the export was built from: show each item's text beside its id "
                    "(the export stores no texts)")
    lk.add_argument("--limit", type=_at_least(0), default=50, help="items shown for --prefix (the count is always exact)")
    lk.add_argument("--json", action="store_true", help="one JSON object per line")
    lk.set_defaults(func=commands.cmd_lookup)


def _parser_assign(sub) -> None:
    a = sub.add_parser("assign", help="give new catalog items IDs without moving any existing ID")
    a.add_argument("dir", help="export directory (updated atomically)")
    a.add_argument("--catalog", required=True, help="catalog with the new items (items already present are skipped)")
    a.add_argument("--embeddings", help="precomputed embeddings for the catalog")
    a.add_argument("--limit", type=int, default=50, help="new items' IDs printed (default 50; --json lists all)")
    a.add_argument("--json", action="store_true", help="the counts and every new item's ID as one JSON object")
    a.add_argument("--no-progress", action="store_true")
    a.set_defaults(func=commands.cmd_assign)


def _parser_evaluate(sub) -> None:
    ev = sub.add_parser("evaluate", help="quality of an export: usage, collisions, purity/NMI, neighbour and co-interaction coherence")
    ev.add_argument("dir", help="export directory")
    ev.add_argument("--catalog", help="the catalog the export was built from (for labels and texts); required without --downstream")
    _add_quality_inputs(ev)
    ev.add_argument("--downstream", action="store_true",
                    help="instead: train a generative retriever on the IDs and --sequences (leave-one-out) and report "
                         "Recall@5/10 and NDCG@5/10 with 95%% intervals beside a popularity ranking (docs/downstream.md)")
    ev.add_argument("--preset", choices=["small", "full", "tiger"], default="small",
                    help="with --downstream: the retriever's size and budget; small is a quick CPU check, full trains to "
                         "convergence (SASRec-style, up to 200 epochs), tiger is TIGER-sized (use --device cuda)")
    ev.add_argument("--epochs", type=int, help="with --downstream: at most this many epochs (default: the preset's)")
    ev.add_argument("--warmup-steps", type=int, help="with --downstream: learning-rate warm-up steps (default: the preset's)")
    ev.add_argument("--device", default="cpu", help="with --downstream: torch device, e.g. cuda")
    ev.add_argument("--seed", type=int, default=0, help="with --downstream: the retriever's seed")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=commands.cmd_evaluate)


def _parser_decoding_files(sub) -> None:
    p = sub.add_parser("decoding-files", help="write what generative trainers and serving engines read: sid2pid.json, "
                                              "codes.npy + item_ids.json, vocab.json, trie.safetensors")
    p.add_argument("export", help="export directory")
    p.add_argument("--out", required=True, help="output directory: new, empty, or an earlier decoding-files directory")
    p.add_argument("--formats", nargs="+", metavar="FORMAT", help="any of sid2pid, codes, vocab, trie (default: all; "
                   "an unknown name is refused)")
    p.add_argument("--json", action="store_true", help="print the written paths as a JSON object")
    p.set_defaults(func=commands.cmd_decoding_files)


def _parser_report(sub) -> None:
    r = sub.add_parser("report", help="an HTML page with plots about an export: training, code usage, collisions, quality")
    r.add_argument("dir", help="export directory")
    r.add_argument("--out", help="report directory, replaced atomically (default DIR-report beside the export, which "
                   "rebuilds and assign never touch); holds index.html and PNGs")
    r.add_argument("--baselines", help="JSON rows to compare with, e.g. benchmarks/results/quality.json")
    r.add_argument("--baselines-catalog", help="keep the baseline rows of this catalog (default: inferred from the export)")
    r.add_argument("--catalog", help="the export's catalog: evaluate purity/NMI and neighbour coherence (else metrics.json)")
    r.add_argument("--previous", metavar="OLD", help="an earlier export: add a 'Churn since the previous export' section "
                                                     "(the numbers of `semantic-ids diff OLD DIR`)")
    _add_quality_inputs(r)
    r.add_argument("--json", action="store_true", help="print the report path as a JSON object")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=commands.cmd_report)


def _parser_diff(sub) -> None:
    d = sub.add_parser("diff", help="ID churn between two exports: share of common items whose ID or prefix changed, "
                                    "new and removed items")
    d.add_argument("old", help="the earlier export directory")
    d.add_argument("new", help="the later export directory")
    d.add_argument("--json", action="store_true", help="print the report as one JSON object")
    d.set_defaults(func=commands.cmd_diff)


# A subcommand: add its parser function here; its handler (cmd_NAME) imports what it needs.
SUBCOMMANDS = [_parser_build, _parser_lookup, _parser_assign, _parser_evaluate, _parser_report, _parser_decoding_files,
               _parser_diff]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semantic-ids", description="Semantic IDs for generative recommenders.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = p.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The command line owns its process: OpenMP's spin-waiting slows torch's many small ops
    # when another process shares the cores (benchmarks/omp_wait.py measures it); passive
    # waiting changes no result. It must be set before torch loads; a user's value is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader that left shows here, inside the handler below
        return code
    except SemanticIDsError as exc:  # bad input; anything else is a bug and keeps its traceback
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"semantic-ids: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # some other pipe broke: a bug, with its traceback
        return EXIT_PIPE
    except KeyboardInterrupt:
        print("semantic-ids: interrupted; any earlier export is untouched", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        # The interpreter's exit-time garbage collection walks every object torch and
        # its dependencies created, seconds after the summary on busy cores. Nothing of
        # ours needs it (files are written and fsynced, handles closed by then), so move
        # what exists to the permanent generation and exit at once.
        gc.freeze()


def _stdout_closed() -> bool:
    """Whether the reader of stdout left (``| head -1``); if so, stdout is pointed at
    /dev/null, as the Python docs' "Note on SIGPIPE" recommends, so that the interpreter's
    flush at exit does not fail again. The end of a pipe whose reader closed polls as
    POLLERR; a BrokenPipeError from any other pipe is not this."""
    try:
        fd = sys.stdout.fileno()
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            if not any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0)):
                return False
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (stdout replaced): not a closed pipe
        return False
    return True


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
