# Set-up and checks. `make venv` creates .venv with every runtime and test dependency;
# `make test` runs the test suite but its slow checks (pytest.ini's `slow` marker),
# `make check-all` all of it (what CI runs); `make demo` trains and evaluates on
# synthetic videos.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two pytest processes (pytest-xdist), each test module in one of them, handed out in the
# order tests/conftest.py gives (longest first); PYTEST_ARGS= runs one (docs/tests.md)
PYTEST_ARGS ?= -n 2 --dist loadscope --no-loadscope-reorder

.PHONY: venv test check-all demo

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	@echo "Compiling Jittor's core on first use (a few minutes, once per machine)..."
	$(PY) -c "import core.jittor_setup"
	@echo "Compiling librosa's numba functions for the MFCC features (~20 s, once)..."
	$(PY) -c "from datasets.audio import compile_librosa; compile_librosa()"
	@command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1 || \
		echo "note: OpenMPI is missing, so multi-process training (mpirun) and its tests are \
unavailable; install it with: sudo apt-get install openmpi-bin libopenmpi-dev"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS) -m "not slow" tests

check-all: venv
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

# The demo: synthetic raw videos -> prepared dataset -> a small model trained on the CPU ->
# evaluation of the best checkpoint, with its error-analysis page and the attention picture
# of one test video. Then the same for a dataset of three classes of our
# own (a made split, their polarity), evaluated with features, and a folder of new clips
# predicted in one call. Everything goes under demo/ (git-ignored); the demo's own
# results folders are replaced on each run.
DEMO := demo
DEMO_MODEL := --resnet_depth 10 --snippet_duration 8 --sample_size 64 --seq_len 4 \
	--batch_size 8 --learning_rate 1e-3 --manual_seed 1
DEMO_TRAIN := --root_path $(DEMO)/data --result_path $(DEMO)/results --expr_name demo \
	--n_epochs 9 $(DEMO_MODEL)
DEMO_CLASSES := calm,cheerful,tense
DEMO_CUSTOM := --dataset custom --root_path $(DEMO)/custom_data --result_path $(DEMO)/results \
	--expr_name custom --n_epochs 2 $(DEMO_MODEL)

demo: venv
	$(PY) tools/make_demo_dataset.py --dst $(DEMO)/raw
	$(PY) tools/prepare_dataset.py --src $(DEMO)/raw --dst $(DEMO)/data --dataset ve8 \
		--split_dir $(DEMO)/raw/splits
	rm -rf $(DEMO)/results/demo
	$(PY) main.py $(DEMO_TRAIN)
	$(PY) test.py $(DEMO_TRAIN) --resume_path $(DEMO)/results/demo/best.npz \
		--out $(DEMO)/results/demo/test --html $(DEMO)/results/demo/test/page
	$(PY) predict.py "$(DEMO)/raw/Joy/joy-test-01.mp4" --checkpoint $(DEMO)/results/demo/best.npz \
		--report $(DEMO)/results/demo/test/attention.png
	$(PY) tools/make_demo_dataset.py --dst $(DEMO)/custom_raw --classes $(DEMO_CLASSES) --no_lists \
		--per_class_train 6 --per_class_test 0 --seconds 2
	$(PY) tools/prepare_dataset.py --dataset custom --src $(DEMO)/custom_raw --dst $(DEMO)/custom_data \
		--positive_classes calm,cheerful
	rm -rf $(DEMO)/results/custom
	$(PY) main.py $(DEMO_CUSTOM)
	$(PY) test.py --resume_path $(DEMO)/results/custom/best.npz \
		--features $(DEMO)/results/custom/test/features.npz
	$(PY) tools/make_demo_dataset.py --dst $(DEMO)/clips --classes $(DEMO_CLASSES) --no_lists \
		--per_class_train 2 --per_class_test 0 --seconds 2 --seed 7
	$(PY) predict.py $(DEMO)/clips --checkpoint $(DEMO)/results/custom/best.npz \
		--csv $(DEMO)/results/custom/clips.csv --features $(DEMO)/results/custom/clips.npz
	@$(PY) -c "import json; r = json.load(open('$(DEMO)/results/demo/test/report.json')); \
		print('demo: test accuracy %.3f (%d/%d)' % (r['accuracy'], r['n_correct'], r['n_videos']))"
	@$(PY) -c "import csv, json, os; r = json.load(open('$(DEMO)/results/custom/test/report.json')); \
		rows = list(csv.DictReader(open('$(DEMO)/results/custom/clips.csv'))); \
		right = sum(os.path.basename(os.path.dirname(x['path'])) == x['top_class'] for x in rows); \
		print('demo (classes %s): test accuracy %.3f (%d/%d); new clips predicted right: %d/%d' \
		% (', '.join(r['class_names']), r['accuracy'], r['n_correct'], r['n_videos'], right, len(rows)))"
	@echo "demo: attention of one test video: $(DEMO)/results/demo/test/attention.png"
	@echo "demo: TensorBoard: .venv/bin/tensorboard --logdir $(DEMO)/results"
	@echo "demo: error-analysis page (open in a browser): $(DEMO)/results/demo/test/page/index.html"
