#!/usr/bin/env bash
# Checks the ops kit without a Docker engine: hadolint, the kustomize overlays (rendered,
# kubernetes-validate, CRD structure), a structural check of compose.yaml, systemd-analyze verify, promtool on the rules. Run by `make test`.
set -euo pipefail
cd "$(dirname "$0")"
fail=0
step() { printf '%-44s' "$1"; }
ok() { echo ok; }

step "hadolint Dockerfile"
hadolint Dockerfile && ok || fail=1

step "kustomize components up to date"
python3 kubernetes/generate.py --check && ok || fail=1

# Every overlay renders; core objects pass kubernetes-validate, the Prometheus Operator's
# objects a structural check, and the PrometheusRule's groups promtool.
for overlay in kubernetes/base kubernetes/overlays/monitoring kubernetes/overlays/podmonitor; do
	step "kustomize $overlay"
	rendered=$(mktemp -d)
	if kubectl kustomize "$overlay" > "$rendered/all.yaml" && python3 - "$rendered" <<'PY'
import pathlib, subprocess, sys, yaml
out = pathlib.Path(sys.argv[1])
docs = [d for d in yaml.safe_load_all((out / "all.yaml").read_text()) if d]
kinds = sorted(d["kind"] for d in docs)
assert {"Namespace", "DaemonSet", "Service"} <= set(kinds), kinds
core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
for i, d in enumerate(core):
    (out / f"core-{i}.yaml").write_text(yaml.safe_dump(d))
r = subprocess.run(["kubernetes-validate", "--quiet", "--strict"] + [str(p) for p in sorted(out.glob("core-*.yaml"))],
                   capture_output=True, text=True)
if r.returncode != 0:
    sys.exit(r.stdout + r.stderr)
for d in docs:
    if d["apiVersion"] != "monitoring.coreos.com/v1":
        continue
    spec, kind = d["spec"], d["kind"]
    assert d["metadata"].get("name") and d["metadata"].get("namespace"), d["metadata"]
    if kind == "ServiceMonitor":
        assert spec["selector"]["matchLabels"] and all(e["port"] and e["honorLabels"] is True for e in spec["endpoints"]), spec
    elif kind == "PodMonitor":
        assert spec["selector"]["matchLabels"] and all(e["port"] and e["honorLabels"] is True for e in spec["podMetricsEndpoints"]), spec
    elif kind == "PrometheusRule":
        (out / "rules.yml").write_text(yaml.safe_dump({"groups": spec["groups"]}))
        r = subprocess.run(["promtool", "check", "rules", str(out / "rules.yml")], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stdout + r.stderr)
    else:
        sys.exit(f"unexpected kind {kind}")
dash = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
if "monitoring" in str(sys.argv[1]) or any(d["kind"] == "PrometheusRule" for d in docs):
    assert len(dash) == 1 and "portwatch.json" in dash[0]["data"], "the dashboard ConfigMap"
PY
	then ok; else fail=1; fi
	rm -rf "$rendered"
done

step "compose.yaml structure"
python3 - <<'PY' && ok || fail=1
import os, sys, yaml
c = yaml.safe_load(open("compose.yaml"))
s = c["services"]
assert set(s) == {"portwatch", "prometheus", "grafana"}, s.keys()
pw = s["portwatch"]
assert pw["pid"] == "host" and pw["network_mode"] == "host", "portwatch needs the host's pids and network"
# SYS_ADMIN stands in for BPF and PERFMON, which Docker 20.10 refuses to grant.
assert set(pw["cap_add"]) == {"NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}, pw["cap_add"]
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
promtool check rules prometheus/portwatch-rules.yml prometheus/portwatch-fleet-rules.yml >/dev/null && ok || fail=1
step "promtool test rules"
(cd prometheus && promtool test rules portwatch-rules.test.yml portwatch-fleet-rules.test.yml >/dev/null) && ok || fail=1
step "promtool check config"
promtool check config --syntax-only prometheus/prometheus.yml >/dev/null 2>&1 && ok || { promtool check config --syntax-only prometheus/prometheus.yml; fail=1; }

step "promtool check web-config"
promtool check web-config web-config.example.yml >/dev/null 2>&1 && ok || fail=1

exit $fail
