# Two commands do all set-up on a fresh machine:
#   make demo   install, fetch MovieLens-100K from the recbole wheel, build its semantic IDs twice:
#               from the movies' text (out/movielens) and with the users' ratings fused in (out/movielens-seq)
#   make test   install, run the whole test suite, slow tests included (as CI does)
# Quick loop while editing: python -m pytest -m "not slow" (skips the tests marked slow, each over ~5 s)
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install demo test bench-quality bench-scale

install:
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q -e ".[test]"

demo: install
	$(PYTHON) pipelines/build.py --config pipelines/configs/movielens.toml
	@echo; echo "== the same movies with the users' ratings (data/ml-100k/sequences.jsonl) fused in: the better IDs =="
	$(PYTHON) pipelines/build.py --config pipelines/configs/movielens_sequences.toml
	@echo; echo "next: semantic-ids lookup out/movielens-seq --item 1 --k 5 --catalog data/ml-100k/items.parquet"
	@echo "      semantic-ids diff out/movielens out/movielens-seq    (how far behaviour moved the IDs)"

test: install
	$(PYTHON) -m pytest -q

bench-quality: install
	$(PIP) install -q -e ".[test,bench]"
	$(PYTHON) benchmarks/quality.py --catalogs beauty movielens --seeds 0 1 2 --peer-seeds 0 1 2 --slow-seeds 0

bench-scale: install
	$(PYTHON) benchmarks/scale.py
