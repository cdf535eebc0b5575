# agentgov: the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
# CI builds a clean clone once: incremental data would only cost disk (gigabytes) and time.
ifdef CI
export CARGO_INCREMENTAL ?= 0
endif

.PHONY: test run bench node-e2e images fmt-check clippy unit policy-test crd-check crds cli-docs controlplane build e2e clean-cache tools chart-test static

## test: everything CI runs: formatting, lints, unit and policy tests, CRD drift, e2e on a real control plane,
## and the chart as Pods on a real node (node-e2e)
test: fmt-check clippy policy-test unit crd-check chart-test e2e static node-e2e

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy --locked -p agentgov-e2e --test trust_validating_only -- -D warnings

## unit: unit tests, proof-contract vectors, schema validation of examples, the promotion policy's
## test table on regorus' RVM, and the differential test against OPA (hence tools)
unit: tools
	$(CARGO) test --workspace --exclude agentgov-e2e --locked

## policy-test: OPA (built by tools) checks policies/ strictly and runs the promotion policy's test
## table (policies/testdata/promotion_cases.yaml, loaded as data) through policies/promotion_test.rego
policy-test: tools
	"$$(bash hack/tools.sh --print-bin-dir)/opa" check --strict policies/
	"$$(bash hack/tools.sh --print-bin-dir)/opa" test -v policies/

## crd-check: the committed CRD YAML (and generated examples) match what crdgen prints
crd-check:
	$(CARGO) run -q --locked -p agentgov-api --bin crdgen -- --check

## cli-docs: rewrite docs/cli.md's command reference from the plugin's help texts (a unit test fails when it drifts)
cli-docs:
	AGENTGOV_WRITE_DOCS=1 $(CARGO) test -q --locked -p agentgov-cli --bin kubectl-agentgov docs_cli_md

## crds: regenerate crds/*.yaml and examples/policybundle-default.yaml
crds:
	$(CARGO) run -q --locked -p agentgov-api --bin crdgen

## tools: helm, OPA, the PromQL checker, promtool and lua5.4 into .cache/tools (cached; hack/tools.sh)
tools:
	bash hack/tools.sh

## chart-test: the Helm chart without a cluster: lint/template of every values variant,
## security/RBAC/webhook checks, alerts and dashboard, Argo CD health (the cluster part,
## e2e/tests/chart.rs, runs in e2e)
chart-test: tools
	bash e2e/chart/test.sh

## controlplane: build (once, cached) etcd, kube-apiserver, kube-controller-manager and kubectl from Go modules,
## and fetch the upstream CRDs e2e installs (agent-sandbox Sandbox, PolicyReport; Go modules, pinned and verified)
controlplane:
	bash e2e/controlplane/build.sh
	bash e2e/controlplane/agent-sandbox-crd.sh >/dev/null
	bash e2e/controlplane/policyreport-crd.sh >/dev/null

## build: the operator, webhook and tools (debug)
build:
	$(CARGO) build --workspace --locked --bins

## e2e: start a throwaway control plane on loopback, run the e2e suite against it, tear it down
e2e: controlplane build tools
	bash e2e/controlplane/cluster.sh exec -- $(CARGO) test --locked -p agentgov-e2e -- --test-threads=2
	AGENTGOV_APISERVER_FLAGS="--runtime-config=admissionregistration.k8s.io/v1/mutatingadmissionpolicies=false,admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings=false --disable-admission-plugins=MutatingAdmissionPolicy" bash e2e/controlplane/cluster.sh exec -- $(CARGO) test --locked -p agentgov-e2e --test trust_validating_only -- --test-threads=2
	bash e2e/controlplane/cluster.sh exec -- bash e2e/chart/kubeconform.sh

## static: the operator and webhook linked statically (as the images ship them), checked, and the
## operator and webhook e2e suites run with them against the real control plane
static: controlplane tools
	bash e2e/static.sh

NODE_IMAGES = $(CURDIR)/.cache/images/debug/agentgov-operator.oci.tar $(CURDIR)/.cache/images/debug/agentgov-webhook.oci.tar

## node-e2e: the images (debug, no daemon) checked against the Dockerfiles, then a real node
## (containerd, kubelet, kube-proxy; e2e/node) on the loopback control plane: Pods, logs,
## Services, the guards that keep Pod and Service traffic on the host, and the chart installed
## with helm running as Pods (replicas, leader election, probes, PDBs, certificates; zero failed
## admissions during a rollout, a leader's deletion and a certificate rotation); fails if the
## host is not left as it was found (iptables, routes, links, mounts, cgroups, sysctls)
node-e2e: controlplane tools build
	$(CARGO) clippy --locked -p agentgov-e2e --features node --lib --test node --test images --test node_chart -- -D warnings
	AGENTGOV_IMAGE_PROFILE=debug AGENTGOV_IMAGE_DIR=$(CURDIR)/.cache/images/debug bash deploy/docker/images.sh
	AGENTGOV_IMAGE_DIR=$(CURDIR)/.cache/images/debug $(CARGO) test --locked -p agentgov-e2e --features node --test images
	AGENTGOV_NODE_IMAGES="$(NODE_IMAGES)" bash e2e/node/node.sh exec -- \
	  $(CARGO) test --locked -p agentgov-e2e --features node --test node --test node_chart -- --test-threads=2 --nocapture

## images: the operator and webhook images as OCI archives in .cache/images, built without a
## daemon or registry from the static release binaries (deploy/docker/images.sh); for kind:
## kind load image-archive .cache/images/agentgov-operator.oci.tar (and the webhook's)
images:
	bash deploy/docker/images.sh

## run: the main job: a cluster (KUBECONFIG or an embedded loopback one) with agentgov running in it
run:
	bash e2e/run.sh

## bench: benchmarks; results are written to BENCHMARKS.md
bench: controlplane
	bash e2e/bench.sh

clean-cache:
	rm -rf .cache
