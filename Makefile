# Set-up and checks. `make venv` creates .venv with every runtime and test dependency;
# `make test` runs the test suite; `make demo` trains and evaluates on synthetic videos.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv test demo clean-demo

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	@echo "Compiling Jittor's core on first use (a few minutes, once per machine)..."
	$(PY) -c "import core.jittor_setup"
	@command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1 || \
		echo "note: OpenMPI is missing, so multi-process training (mpirun) and its tests are \
unavailable; install it with: sudo apt-get install openmpi-bin libopenmpi-dev"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q tests

# The demo: synthetic raw videos -> prepared dataset -> a small model trained on the CPU ->
# evaluation of the best checkpoint. Everything goes under demo/ (git-ignored); the demo's
# own results folder is replaced on each run.
DEMO := demo
DEMO_TRAIN := --root_path $(DEMO)/data --result_path $(DEMO)/results --expr_name demo \
	--resnet_depth 10 --snippet_duration 8 --sample_size 64 --seq_len 4 \
	--batch_size 8 --n_epochs 12 --learning_rate 1e-3 --manual_seed 1

demo: venv
	$(PY) tools/make_demo_dataset.py --dst $(DEMO)/raw
	$(PY) tools/prepare_dataset.py --src $(DEMO)/raw --dst $(DEMO)/data --dataset ve8 \
		--split_dir $(DEMO)/raw/splits
	rm -rf $(DEMO)/results/demo
	$(PY) main.py $(DEMO_TRAIN)
	$(PY) test.py $(DEMO_TRAIN) --resume_path $(DEMO)/results/demo/best.npz \
		--out $(DEMO)/results/demo/test
	@$(PY) -c "import json; r = json.load(open('$(DEMO)/results/demo/test/report.json')); \
		print('demo: test accuracy %.3f (%d/%d)' % (r['accuracy'], r['n_correct'], r['n_videos']))"
