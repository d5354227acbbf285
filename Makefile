# threetier: entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export CONTAINERS_CONF := $(CURDIR)/scripts/containers.conf
export PYTHONDONTWRITEBYTECODE := 1

ENV ?= local
VERSION ?=
SCENARIO ?=
PYTEST_ARGS ?=
ifdef TIMING
export ANSIBLE_CALLBACKS_ENABLED := ansible.posix.profile_tasks,ansible.posix.timer
endif

.PHONY: help setup up down test lint test-app test-roles test-kit molecule wheel bench clean

help: ## list the entry points
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install what is missing (Debian packages, .venv with requirements.txt)
	@scripts/setup.sh

up: setup ## bring up the local environment and print its URL
	@scripts/up.sh

down: ## remove the local environment
	@scripts/down.sh

test: setup ## every test, as CI runs it: lint, app, roles, kit, fleet (scripts/test-all.sh)
	@scripts/test-all.sh

lint: setup ## ruff, yamllint, ansible-lint (production profile)
	ruff check .
	ruff format --check .
	yamllint --strict .
	ansible-lint

test-app: setup ## taskboard's tests (real PostgreSQL, started by the tests)
	cd app && pytest $(PYTEST_ARGS)

test-roles: setup ## every Molecule scenario (podman, systemd containers)
	scripts/molecule-all.sh

molecule: setup ## one Molecule scenario: make molecule SCENARIO=nginx_web [CMD=test]
	@test -n "$(SCENARIO)" || { echo "usage: make molecule SCENARIO=<name> [CMD=test|converge|verify|destroy]" >&2; exit 2; }
	scripts/build-base-image.sh
	molecule $(or $(CMD),test) -s $(SCENARIO)

test-kit: setup ## tests of the kit as a whole (tests/)
	pytest tests $(PYTEST_ARGS)

wheel: setup ## build taskboard's release artifact into dist/
	scripts/build-wheel.sh

bench: setup ## the benchmarks (they print figures)
	@for b in bench/*.py; do echo "== $$b"; python "$$b"; done

clean: ## remove build products (not the environment)
	rm -rf dist app/build app/*.egg-info .cache .pytest_cache .ruff_cache

# --- the local fleet's releases and tests (appended by the local-fleet work) ---
SERIAL ?= 1
.PHONY: release rollback test-fleet

STRATEGY ?= rolling
# immutable: bake (reused when the release has its AMIs), then app before
# web as in a rolling release, BATCH instances surged and replaced at a time
# (on AWS the builders are reached over SSM: no inbound rule, no address to give).
# BAKE=no releases the AMIs already baked for VERSION (the delivery pipeline
# bakes once, in dev); PROMOTE_FROM=<account id> first copies the AMIs that
# account baked and shared into this environment's account (one account per
# environment: playbooks/ami_promote.yml)
BATCH ?= 1
BAKE ?= yes
PROMOTE_FROM ?=
# (the emulator's endpoint only for ENV=local: AWS environments never get it)
RELEASE_ENV = $(if $(filter local,$(ENV)),AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-$$(scripts/moto.sh url)}) ANSIBLE_CALLBACKS_ENABLED=$${ANSIBLE_CALLBACKS_ENABLED:-ansible.posix.timer}
release: setup ## release: make release VERSION=x.y.z [ENV=local] [SERIAL=1|50%] [STRATEGY=rolling|immutable] [BATCH=1] [BAKE=no] [PROMOTE_FROM=id]
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=x.y.z [ENV=local] [SERIAL=1] [STRATEGY=rolling|immutable] [BATCH=1] [BAKE=yes|no] [PROMOTE_FROM=<account id>]" >&2; exit 2; }
ifeq ($(STRATEGY),immutable)
	@case "$(BAKE)/$(PROMOTE_FROM)" in yes/|no/*) ;; yes/*) echo "release: PROMOTE_FROM copies AMIs baked in another account: give BAKE=no with it" >&2; exit 2;; *) echo "release: BAKE is yes or no, not '$(BAKE)'" >&2; exit 2;; esac
ifeq ($(BAKE),yes)
	$(RELEASE_ENV) ansible-playbook -i inventories/$(ENV) playbooks/images.yml -e threetier_release=$(VERSION)
endif
ifneq ($(PROMOTE_FROM),)
	$(RELEASE_ENV) ansible-playbook -i inventories/$(ENV) playbooks/ami_promote.yml -e release_version=$(VERSION) -e aws_ami_promote_source_account=$(PROMOTE_FROM)
endif
	$(RELEASE_ENV) ansible-playbook -i inventories/$(ENV) playbooks/release_immutable.yml -e release_tier=app -e release_version=$(VERSION) -e release_batch_size=$(BATCH)
	$(RELEASE_ENV) ansible-playbook -i inventories/$(ENV) playbooks/release_immutable.yml -e release_tier=web -e release_version=$(VERSION) -e release_batch_size=$(BATCH)
else ifneq ($(STRATEGY),rolling)
	@echo "release: STRATEGY is rolling or immutable, not '$(STRATEGY)'" >&2; exit 2
else
	$(RELEASE_ENV) ansible-playbook -i inventories/$(ENV) playbooks/release.yml -e release_version=$(VERSION) -e release_serial=$(SERIAL)
endif

rollback: setup ## back to the previous release: make rollback [VERSION=x.y.z] [ENV=local]
	$(RELEASE_ENV) ansible-playbook -i inventories/$(ENV) playbooks/rollback.yml -e release_serial=$(SERIAL) $(if $(VERSION),-e release_version=$(VERSION))

test-fleet: setup ## the local fleet's tests (make up first; real containers and traffic)
	THREETIER_FLEET_TESTS=1 pytest tests/local $(PYTEST_ARGS)

# --- the operator's documents ---
DIAGRAM_DIR ?= build/diagram
.PHONY: reference diagram

reference: setup ## regenerate docs/reference.md (every role's and playbook's variables)
	python scripts/gen-reference.py

diagram: setup ## draw the deployed environment (SVG, PNG): make diagram [ENV=local] [DIAGRAM_DIR=build/diagram]
	$(if $(filter local,$(ENV)),AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-$$(scripts/moto.sh url)} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1) \
	  python scripts/diagram.py --prefix threetier-$(ENV) --out-dir $(DIAGRAM_DIR)
