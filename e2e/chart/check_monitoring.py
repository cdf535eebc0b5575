#!/usr/bin/env python3
"""Checks the rendered PrometheusRule and Grafana dashboard of charts/agentgov:

- every metric they query is one the binaries export (names read from
  operator/src/metrics.rs and webhook/src/metrics.rs) or a known Kubernetes/Prometheus metric,
  so a renamed metric cannot leave an alert that never fires;
- the alerts the issue asks for are there, each with severity, summary and description;
- the dashboard shows each thing it should (admissions by code, latency, promotions, reloads,
  agents by status);
- with --promql PARSER: every expression parses with Prometheus' own parser (e2e/chart/promql).

    check_monitoring.py RENDERED.yaml [--promql PARSER]
"""
import json
import os
import re
import subprocess
import sys

import yaml

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
EXTERNAL = {"up", "apiserver_admission_webhook_rejection_count", "apiserver_admission_webhook_request_total"}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "absent", "by", "without", "or",
    "and", "unless", "histogram_quantile", "vector", "on", "ignoring", "offset", "bool", "label_values",
}
WANT_ALERTS = {
    "AgentgovWebhookDown", "AgentgovWebhookFailingClosed", "AgentgovWebhookUnreachable",
    "AgentgovAdmissionDenialsSpike", "AgentgovPolicyReloadFailed", "AgentgovAgentsInvalidated",
    "AgentgovTrustGuardsMissing", "AgentgovBreakGlass", "AgentgovNamespaceBudgetNearLimit",
    "AgentgovNamespaceBudgetExhausted",
}
WANT_IN_DASHBOARD = {
    "agent_starts_allowed_total", "agent_starts_denied_total", "admission_review_duration_seconds_bucket",
    "promotion_attempts_total", "promotion_denies_total", "policy_reload_success_total",
    "policy_reload_failure_total", "agentgov_agents", "agentgov_budget_allocated_usd",
    "agentgov_budget_limit_usd",
}


def exported_metrics():
    """Names registered with prometheus-client, with the suffixes it adds."""
    names = set()
    for path in ("operator/src/metrics.rs", "webhook/src/metrics.rs"):
        with open(os.path.join(REPO, path)) as f:
            source = f.read()
        for name in re.findall(r'register\(\s*"([a-z_:][a-z0-9_:]*)"', source):
            names.update({name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    if len(names) < 10:
        sys.exit("found almost no registered metrics in the sources: has metrics.rs moved?")
    return names


def metrics_in(expr):
    without_strings = re.sub(r'"(\\.|[^"\\])*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_grouping = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_labels)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", re.sub(r"\[[^\]]*\]", "", without_grouping)))
    return {t for t in tokens if t not in PROMQL_WORDS and not re.fullmatch(r"\d*[smhdwy]|e\d*", t)}


def main():
    path = sys.argv[1]
    parser = sys.argv[sys.argv.index("--promql") + 1] if "--promql" in sys.argv else None
    with open(path) as f:
        objs = [o for o in yaml.safe_load_all(f) if o]
    rules = [o for o in objs if o["kind"] == "PrometheusRule"]
    dashboards = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    problems = []
    if len(rules) != 1 or len(dashboards) != 1:
        sys.exit(f"{path}: want one PrometheusRule and one dashboard ConfigMap, got {len(rules)} and {len(dashboards)}")
    exprs = {}
    for group in rules[0]["spec"]["groups"]:
        for rule in group["rules"]:
            exprs[f"alert {rule['alert']}"] = rule["expr"]
            if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                problems.append(f"alert {rule['alert']}: no severity")
            if not {"summary", "description"} <= set(rule.get("annotations", {})):
                problems.append(f"alert {rule['alert']}: summary or description missing")
    missing = WANT_ALERTS - {name.split(" ", 1)[1] for name in exprs}
    if missing:
        problems.append(f"alerts missing: {sorted(missing)}")
    dashboard = json.loads(next(iter(dashboards[0]["data"].values())))
    dashboard_metrics = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
            dashboard_metrics |= metrics_in(target["expr"])
    if WANT_IN_DASHBOARD - dashboard_metrics:
        problems.append(f"dashboard does not show {sorted(WANT_IN_DASHBOARD - dashboard_metrics)}")
    known = exported_metrics() | EXTERNAL
    for name, expr in exprs.items():
        for metric in metrics_in(expr) - known:
            problems.append(f"{name}: {metric} is not a metric the binaries export")
    if parser:
        lines = "".join(f"{name}\t{' '.join(expr.split())}\n" for name, expr in exprs.items())
        run = subprocess.run([parser], input=lines, capture_output=True, text=True, check=False)
        print(run.stdout.strip())
        if run.returncode != 0:
            problems.append(f"PromQL does not parse:\n{run.stdout}{run.stderr}")
    for p in problems:
        print(f"  {path}: {p}")
    print(f"monitoring: {len(exprs)} expressions, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
