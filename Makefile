# Every target creates the virtual environment it needs; nothing else has to be
# installed first but Python 3.11, and Java 17 with Maven for the test broker.
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint unit bench clean

demo: $(INSTALLED)
	$(VENV)/bin/mentorflow demo

# PostgreSQL: DATABASE_URL when set, else the machine's own server (installed
# and started when absent). Kafka: KAFKA_BOOTSTRAP when set, else the tests
# start a single-node Apache Kafka from Maven Central artifacts.
test: $(INSTALLED) lint
	DATABASE_URL="$$(infra/scripts/ensure-postgres.sh)" $(PYTHON) -m pytest

unit: $(INSTALLED)
	$(PYTHON) -m pytest tests/unit

# Apache Kafka and PostgreSQL as for the tests; prints figures beside ceilings
# measured in the same run, saves them in bench/results/, plots in bench/plots/.
bench: $(INSTALLED)
	DATABASE_URL="$$(infra/scripts/ensure-postgres.sh)" $(PYTHON) -m bench.run

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

$(INSTALLED): pyproject.toml infra/constraints.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -c infra/constraints.txt -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .mentorflow .pytest_cache .mypy_cache .ruff_cache
