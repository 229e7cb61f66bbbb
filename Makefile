# The few commands people run; CI runs `make test`.
.PHONY: demo demo-host test test-incluster report soak down crds lint image cluster-up cluster-down

demo: ## the user's path: a single-node cluster, the image built here, `helm install` of the chart, examples, `kubectl get dbconn`
	bash scripts/cluster-demo.sh

demo-host: ## development: control plane + databases, the operator as a host process, examples, `kubectl get dbconn`
	bash scripts/demo.sh

test: ## the whole suite against the real test environment
	bash scripts/test.sh

test-incluster: ## the chart installed into the cluster, tested there (tests/incluster.rs); leaves the cluster running
	bash scripts/test-incluster.sh

report: ## fault, load, bad-input and security scenarios, printed as one table (scripts/reliability-report.sh)
	bash scripts/reliability-report.sh

soak: ## an hour of faults on 1,000 connections, status judged against the truth (scripts/soak.sh; not in CI)
	bash scripts/soak.sh

down: ## stop the demo / test environment
	-if [ -f /tmp/dbconn-testenv/operator.pid ]; then kill $$(cat /tmp/dbconn-testenv/operator.pid) 2>/dev/null; rm -f /tmp/dbconn-testenv/operator.pid; fi
	bash tests/testenv/testenv.sh cluster-down
	bash tests/testenv/testenv.sh down

image: ## the operator image, built here with buildah (scripts/image.sh); imported when the cluster runs
	bash scripts/image.sh

cluster-up: ## a single-node cluster that runs Pods (tests/testenv/lib/cluster.sh), beside the test environment
	bash tests/testenv/testenv.sh cluster-up

cluster-down: ## stop it and remove what it set up on the host
	bash tests/testenv/testenv.sh cluster-down

crds: ## regenerate crds/ from the Rust types, the chart's CRD template from crds/, and the README's engine table
	cargo run --quiet --bin crdgen > crds/databaseconnections.dbconn.dev.yaml
	cargo run --quiet --bin crdgen -- readme README.md
	bash scripts/chart-crds.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
