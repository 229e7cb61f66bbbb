# The few commands people run; CI runs `make test`.
.PHONY: demo test report down crds lint

demo: ## control plane + databases + operator + examples, then `kubectl get dbconn`
	bash scripts/demo.sh

test: ## the whole suite against the real test environment
	bash scripts/test.sh

report: ## fault, load, bad-input and security scenarios, printed as one table (scripts/reliability-report.sh)
	bash scripts/reliability-report.sh

down: ## stop the demo / test environment
	-if [ -f /tmp/dbconn-testenv/operator.pid ]; then kill $$(cat /tmp/dbconn-testenv/operator.pid) 2>/dev/null; rm -f /tmp/dbconn-testenv/operator.pid; fi
	bash tests/testenv/testenv.sh down

crds: ## regenerate crds/ from the Rust types, and the chart's CRD template from crds/
	cargo run --quiet --bin crdgen > crds/databaseconnections.dbconn.dev.yaml
	bash scripts/chart-crds.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
