#!/usr/bin/env bash
# Checks the ops kit without a Docker engine: hadolint, kubernetes-validate, a structural
# check of compose.yaml, systemd-analyze verify, promtool on the rules. Run by `make test`.
set -euo pipefail
cd "$(dirname "$0")"
fail=0
step() { printf '%-44s' "$1"; }
ok() { echo ok; }

step "hadolint Dockerfile"
hadolint Dockerfile && ok || fail=1

step "kubernetes-validate daemonset.yaml"
kubernetes-validate --quiet --strict kubernetes/daemonset.yaml && ok || fail=1

step "compose.yaml structure"
python3 - <<'PY' && ok || fail=1
import os, sys, yaml
c = yaml.safe_load(open("compose.yaml"))
s = c["services"]
assert set(s) == {"portwatch", "prometheus", "grafana"}, s.keys()
pw = s["portwatch"]
assert pw["pid"] == "host" and pw["network_mode"] == "host", "portwatch needs the host's pids and network"
assert set(pw["cap_add"]) >= {"BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN"}, pw["cap_add"]
assert os.path.exists(os.path.join(pw["build"]["context"], pw["build"]["dockerfile"]))
for name, svc in s.items():
    for v in svc.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith(".") and not os.path.exists(src):
            sys.exit(f"{name}: mounted file {src} does not exist")
for key in c.get("volumes", {}):
    assert any(v.startswith(key + ":") for svc in s.values() for v in svc.get("volumes", [])), key
PY

step "systemd-analyze verify portwatch.service"
tmp=$(mktemp -d)
sed "s#/usr/local/bin/portwatch#/bin/true#" systemd/portwatch.service > "$tmp/portwatch.service"
if systemd-analyze verify "$tmp/portwatch.service" 2>"$tmp/err"; then ok; else cat "$tmp/err"; fail=1; fi
rm -rf "$tmp"

step "promtool check rules"
promtool check rules prometheus/portwatch-rules.yml >/dev/null && ok || fail=1
step "promtool test rules"
(cd prometheus && promtool test rules portwatch-rules.test.yml >/dev/null) && ok || fail=1
step "promtool check config"
promtool check config --syntax-only prometheus/prometheus.yml >/dev/null 2>&1 && ok || { promtool check config --syntax-only prometheus/prometheus.yml; fail=1; }

step "promtool check web-config"
promtool check web-config web-config.example.yml >/dev/null 2>&1 && ok || fail=1

exit $fail
