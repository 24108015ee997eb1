#!/usr/bin/env bash
# Validates the deployment files: docker-compose.yml, the Kubernetes
# overlays under deploy/k8s, the Prometheus config,
# alert rules and their unit tests, the Grafana and collector files, and that
# no private key sits under deploy/. A tool that is not installed is skipped
# with a note; any check that runs and fails makes the script exit 1.
# Called by `make test`; safe to run on its own from anywhere.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1

failed=0
ran=0
skipped=0

pass() { ran=$((ran + 1)); echo "ok    $1"; }
fail() { ran=$((ran + 1)); failed=$((failed + 1)); echo "FAIL  $1" >&2; }
skip() { skipped=$((skipped + 1)); echo "skip  $1"; }

# run NAME CMD...: runs CMD, shows its output only when it fails.
run() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		pass "$name"
	else
		fail "$name"
		printf '%s\n' "$out" | sed 's/^/      /' >&2
	fi
}

# --- docker-compose.yml -----------------------------------------------------
if command -v docker-compose >/dev/null 2>&1; then
	run "docker-compose config ($(docker-compose version --short 2>/dev/null || echo '?'))" \
		docker-compose -f docker-compose.yml config -q
elif command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
	run "docker compose config" docker compose -f docker-compose.yml config -q
else
	skip "docker-compose.yml: docker-compose not installed (apt-get install docker-compose)"
fi

# --- Prometheus -------------------------------------------------------------
if command -v promtool >/dev/null 2>&1; then
	run "promtool check config deploy/prometheus/prometheus.yml" \
		promtool check config deploy/prometheus/prometheus.yml
	run "promtool check rules deploy/prometheus/alerts.yml" \
		promtool check rules deploy/prometheus/alerts.yml
	# Paths in the test file are relative to it.
	run "promtool test rules deploy/prometheus/alerts_test.yml" \
		sh -c 'cd deploy/prometheus && promtool test rules alerts_test.yml'
else
	skip "prometheus config and rules: promtool not installed (apt-get install prometheus)"
fi

# --- Grafana and collector files ----------------------------------------------
if command -v python3 >/dev/null 2>&1; then
	for f in deploy/grafana/dashboards/*.json; do
		run "json $f" python3 -m json.tool "$f"
	done
	if python3 -c 'import yaml' 2>/dev/null; then
		for f in deploy/otel-collector.yaml deploy/grafana/provisioning/*/*.yml; do
			run "yaml $f" python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f"
		done
		# Every CHURNWATCH_* variable the compose file sets must be one the
		# Go code reads; a typo would otherwise be silently ignored.
		if [ -n "$(find services -name '*.go' -not -name '*_test.go' -print -quit)" ]; then
			run "compose env names are read by the code" python3 - <<'PY'
import pathlib, sys, yaml
compose = yaml.safe_load(open("docker-compose.yml"))
names = set()
for svc in compose["services"].values():
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    names |= {k for k in env if k.startswith("CHURNWATCH_")}
code = "".join(p.read_text(errors="replace") for p in pathlib.Path("services").rglob("*.go")
               if not p.name.endswith("_test.go"))
missing = sorted(n for n in names if '"%s"' % n not in code)
if missing:
    print("set in docker-compose.yml but read nowhere in services/: " + ", ".join(missing))
    sys.exit(1)
PY
		fi
		# No secret in the compose file: password-like settings name files
		# (…_FILE, Docker secrets), none has a value or a default.
		run "compose has no passwords, only secret files" python3 - <<'PY'
import re, sys, yaml
text = open("docker-compose.yml").read()
compose = yaml.safe_load(text)
bad = []
for name, svc in compose["services"].items():
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    for k, v in env.items():
        if re.search(r"PASSWORD|SECRET|TOKEN", k) and not k.endswith("_FILE"):
            bad.append("%s: %s=%s" % (name, k, v))
for m in re.finditer(r"\$\{([A-Z_]*(PASSWORD|SECRET|TOKEN)[A-Z_]*):-([^}]*)\}", text):
    if not m.group(1).endswith("_FILE"):
        bad.append("default for %s" % m.group(1))
if re.search(r"requirepass\s+[\"']?[A-Za-z0-9]", text):
    bad.append("a literal requirepass")
if bad:
    print("secrets in docker-compose.yml: " + "; ".join(bad))
    sys.exit(1)
PY
	else
		skip "yaml files: python3 yaml module not installed"
	fi
else
	skip "json/yaml files: python3 not installed"
fi

# --- Kubernetes manifests ------------------------------------------------------
# deploy/k8s/test builds the dev and prod overlays with kustomize's own
# library (krusty, what `kubectl apply -k` runs) and decodes every manifest
# strictly into the Kubernetes API types, then checks probes, security
# context, resources, ports, NetworkPolicies, Secret files and setting
# names. Its own module, outside go.work, so the Kubernetes dependencies
# stay out of the services. First run downloads and compiles them (a few
# minutes); later runs take seconds.
if command -v go >/dev/null 2>&1; then
	run "kustomize build + strict decode deploy/k8s/overlays/{dev,prod}" \
		sh -c 'cd deploy/k8s/test && GOWORK=off go test -count=1 ./...'
else
	skip "deploy/k8s: go not installed"
fi

# --- Dockerfiles ----------------------------------------------------------------
for svc in ingester rules alerts; do
	df=services/$svc/Dockerfile
	if [ ! -f "$df" ]; then
		fail "$df missing"
		continue
	fi
	problems=""
	grep -q "\./services/$svc/cmd/$svc" "$df" || problems="$problems no build of ./services/$svc/cmd/$svc;"
	grep -q "HEALTHCHECK .*\"/$svc\", \"healthcheck\"" "$df" ||
		grep -q "CMD \[\"/$svc\", \"healthcheck\"\]" "$df" || problems="$problems no HEALTHCHECK;"
	grep -q '^USER ' "$df" || problems="$problems no USER;"
	if [ -z "$problems" ]; then
		pass "$df"
	else
		fail "$df:$problems"
	fi
	# Not a failure while the service is being written; the image build would be.
	[ -d "services/$svc/cmd/$svc" ] || echo "note  services/$svc/cmd/$svc does not exist yet: the $svc image cannot build"
done

# --- no private keys -----------------------------------------------------------
keys=$(grep -rlE -- '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' deploy docker-compose.yml 2>/dev/null || true)
if [ -n "$keys" ]; then
	fail "private key material under deploy/: $keys"
else
	pass "no private key under deploy/"
fi

echo "check-deploy: $ran checks run, $failed failing, $skipped skipped"
[ "$failed" -eq 0 ]
