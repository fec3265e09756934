# VibeCode: the two commands a fresh machine needs are `make run` and `make test`.
.PHONY: run setup test bench lint sandbox-image images test-deploy clean

run: ## Set everything up and serve VibeCode on the embedded defaults
	@scripts/setup.sh
	@scripts/serve.sh

setup: ## Install and prepare everything, without serving
	@scripts/setup.sh --dev

test: ## Set everything up and run the whole suite on PostgreSQL, Redis, Docker and Chromium
	@scripts/test.sh

bench: ## Run every benchmark, each beside the raw-Docker floor
	@scripts/setup.sh
	@.venv/bin/python -m pip install -q -r requirements-bench.txt
	@bash -c 'source scripts/lib.sh && ensure_packages wrk postgresql redis-server'
	@.venv/bin/python -m bench.run

soak: ## 30 minutes of 20 users saving, running and typing; no errors, leaks or memory growth
	@VIBECODE_SOAK_SECONDS=1800 scripts/test.sh tests/soak -s

lint: ## ruff and mypy
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy .

sandbox-image: ## (Re)build the sandbox image offline
	@scripts/dockerd.sh
	@.venv/bin/python manage.py build_sandbox_image --rebuild

images: ## Build every image of the compose stack offline, from Debian packages (docker-compose.offline.yaml)
	@scripts/images.sh

test-deploy: ## Build the images, start the compose stack and test it through nginx on 127.0.0.1:9000
	@scripts/test-deploy.sh

clean: ## Remove local state (database, static files, logs); never touches Docker volumes
	rm -rf var/db.sqlite3 var/staticfiles var/log
