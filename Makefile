# The two set-up commands (each creates or reuses .venv and installs what it needs):
#   make demo   - rerank bundled example queries offline on CPU with a real small model
#   make test   - run the test suite
#   make lint   - ruff format --check and ruff check (CI runs it before the tests)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export OMP_NUM_THREADS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint

demo:
	bash scripts/bootstrap.sh demo
	.venv/bin/reasonrank demo

test:
	bash scripts/bootstrap.sh test
	.venv/bin/python -m pytest -q -p no:cacheprovider

lint:
	bash scripts/bootstrap.sh test
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
