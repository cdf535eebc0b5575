#!/usr/bin/env python3
"""Checks on `helm template` output of charts/agentgov that a cluster admin would otherwise
review by hand: the security settings of every container, least-privilege RBAC, the webhook
registration, replicas, disruption budgets, the certificate wiring and the admission guards
(with the minimal variant, the guards are also rendered with helm for clusters with and without
MutatingAdmissionPolicy).

    check_rendered.py RELEASE_NAMESPACE RENDERED.yaml

Prints one line per problem and exits 1 if there is any.
"""
import base64
import os
import re
import subprocess
import sys

import yaml

PROBLEMS = []


def problem(where, text):
    PROBLEMS.append(f"{where}: {text}")


def name_of(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def check_pod_security(obj):
    """The restricted Pod Security Standard, plus what the issue asks on every container."""
    where = name_of(obj)
    spec = obj["spec"]["template"]["spec"]
    pod_sc = spec.get("securityContext") or {}
    if pod_sc.get("runAsNonRoot") is not True:
        problem(where, "pod securityContext.runAsNonRoot is not true")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problem(where, f"{key} is set")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            problem(where, f"hostPath volume {volume['name']}")
    containers = (spec.get("initContainers") or []) + spec["containers"]
    for c in containers:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(cw, "allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problem(cw, "readOnlyRootFilesystem is not true")
        if sc.get("privileged"):
            problem(cw, "privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problem(cw, "capabilities.drop lacks ALL")
        if caps.get("add"):
            problem(cw, f"capabilities.add {caps['add']}")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            problem(cw, "runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) in (0, None):
            problem(cw, "runAsUser is root or unset (the images run as 65532)")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            problem(cw, f"seccompProfile is {seccomp}, not RuntimeDefault")
        resources = c.get("resources") or {}
        for kind, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
            if key not in (resources.get(kind) or {}):
                problem(cw, f"resources.{kind}.{key} is not set")
        image = c.get("image", "")
        if image.endswith(":latest") or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
            problem(cw, f"image {image!r} is not pinned to a tag or digest")
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in c:
                problem(cw, f"no {probe}")


def env_of(container):
    return {e["name"]: e for e in container.get("env") or []}


def check_deployments(by_kind, namespace):
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind.get("Deployment", [])}
    if set(deployments) != {"operator", "webhook"}:
        problem("Deployments", f"expected operator and webhook, got {sorted(deployments)}")
        return
    pdbs = by_kind.get("PodDisruptionBudget", [])
    for component, d in deployments.items():
        where = name_of(d)
        if d["metadata"].get("namespace") != namespace:
            problem(where, "not in the release namespace")
        if d["spec"]["replicas"] < 2:
            problem(where, f"replicas {d['spec']['replicas']} < 2")
        selector = d["spec"]["selector"]["matchLabels"]
        if not any(p["spec"]["selector"]["matchLabels"] == selector for p in pdbs):
            problem(where, "no PodDisruptionBudget selects it")
        spec = d["spec"]["template"]["spec"]
        if "podAntiAffinity" not in (spec.get("affinity") or {}):
            problem(where, "no podAntiAffinity")
        container = spec["containers"][0]
        ready = container.get("readinessProbe", {}).get("httpGet", {})
        if (ready.get("path"), ready.get("port")) != ("/readyz", "metrics"):
            problem(where, f"readinessProbe is {ready}, not /readyz on the metrics port")
        if spec.get("automountServiceAccountToken") is False:
            problem(where, "the binaries need their ServiceAccount token")
    op_env = env_of(deployments["operator"]["spec"]["template"]["spec"]["containers"][0])
    for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        got = op_env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if got != field:
            problem("operator", f"{var} does not come from the downward API {field}")
    # Key rings: the operator mounts the signing ring; the webhook only the verification ring.
    secrets = {
        c: {v["secret"]["secretName"] for v in d["spec"]["template"]["spec"].get("volumes", []) if "secret" in v}
        for c, d in deployments.items()
    }
    signing = [s["metadata"]["name"] for s in by_kind.get("Secret", []) if s["metadata"]["name"].endswith("-signing-keys")]
    for name in signing:
        if name in secrets["webhook"]:
            problem("webhook", f"mounts the signing key ring {name}")
        if name not in secrets["operator"]:
            problem("operator", f"does not mount the signing key ring {name}")


def check_env_names(by_kind):
    """Every variable the chart sets is a flag's env of that binary (<component>/src/config.rs,
    or the flags both binaries share, runtime/src/flags.rs)."""
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    with open(os.path.join(repo, "runtime", "src", "flags.rs")) as f:
        shared = set(re.findall(r'env = "([A-Z0-9_]+)"', f.read()))
    for d in by_kind.get("Deployment", []):
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        with open(os.path.join(repo, component, "src", "config.rs")) as f:
            known = set(re.findall(r'env = "([A-Z0-9_]+)"', f.read())) | shared | {"RUST_LOG"}
        for container in d["spec"]["template"]["spec"]["containers"]:
            for name in env_of(container):
                if name not in known:
                    problem(name_of(d), f"sets {name}, which neither {component}/src/config.rs nor runtime/src/flags.rs reads")


def rules_of(role):
    out = set()
    for rule in role.get("rules") or []:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    names = tuple(rule.get("resourceNames", []))
                    out.add((group, resource, verb, names))
    return out


def expand(group, resources, verbs, names=()):
    return {(group, r, v, names) for r in resources for v in verbs}


OPERATOR_RULES = (
    expand("agentgov.dev", ["agents", "policybundles", "agentpromotions", "agentexceptions"], ["get", "list", "watch"])
    | expand("agentgov.dev", ["agents/status", "policybundles/status", "agentpromotions/status", "agentexceptions/status"], ["patch"])
    | expand("agentgov.dev", ["agentpromotions"], ["delete"])
    | expand("apps", ["controllerrevisions"], ["get", "list", "watch", "create", "patch", "update", "delete"])
    | expand("events.k8s.io", ["events"], ["create", "patch"])
    | expand("authorization.k8s.io", ["subjectaccessreviews"], ["create"])
    | expand(
        "admissionregistration.k8s.io",
        ["validatingadmissionpolicies", "validatingadmissionpolicybindings", "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"],
        ["get", "list", "watch"],
    )
    | expand("admissionregistration.k8s.io", ["validatingwebhookconfigurations"], ["get", "list", "watch"])
    | expand("agentgov.dev", ["clusterpolicybundles"], ["get", "list", "watch"])
    | expand("agentgov.dev", ["clusterpolicybundles/status"], ["patch"])
)
# With operator.containPods (AGENTGOV_CONTAIN_PODS=true on the operator), and only then.
CONTAIN_RULES = (
    expand("networking.k8s.io", ["networkpolicies"], ["get", "list", "watch", "create", "update", "delete"])
    | expand("", ["pods"], ["list"])
    | expand("", ["pods/eviction"], ["create"])
)
# With operator.manageWorkloads (AGENTGOV_MANAGE_WORKLOADS=true), and only then.
WORKLOAD_RULES = expand("apps", ["deployments"], ["get", "list", "watch", "create", "update", "delete"]) | expand(
    "", ["configmaps"], ["get", "list", "watch", "create", "update", "delete"]
)
# With policyReports.enabled (AGENTGOV_POLICY_REPORTS=true), and only then.
REPORT_RULES = expand("wgpolicyk8s.io", ["policyreports"], ["get", "list", "watch", "create", "patch", "update", "delete"])
WEBHOOK_RULES = expand("agentgov.dev", ["agents", "policybundles", "agentexceptions", "clusterpolicybundles"], ["get", "list", "watch"])


def operator_flag(by_kind, env_name):
    """Whether the operator Deployment sets the boolean env_name to true."""
    for deployment in by_kind.get("Deployment", []):
        if deployment["metadata"]["labels"].get("app.kubernetes.io/component") != "operator":
            continue
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env") or []:
                if env["name"] == env_name:
                    return env["value"] == "true"
    problem("operator", f"{env_name} is not set: the RBAC cannot be checked against it")
    return False


def check_rbac(by_kind, namespace):
    roles = by_kind.get("ClusterRole", []) + by_kind.get("Role", [])
    for role in roles:
        for group, resource, verb, _ in rules_of(role):
            if "*" in (group, resource, verb):
                problem(name_of(role), f"wildcard in {group}/{resource} {verb}")
            if resource == "secrets" or resource.startswith("secrets/"):
                problem(name_of(role), f"grants {verb} on Secrets (key rings and certificates are mounted files)")
    # What each ServiceAccount gets, over all its bindings.
    granted = {}
    index = {(r["kind"], r["metadata"]["name"]): r for r in roles}
    for binding in by_kind.get("ClusterRoleBinding", []) + by_kind.get("RoleBinding", []):
        role = index.get((binding["roleRef"]["kind"], binding["roleRef"]["name"]))
        if role is None:
            problem(name_of(binding), f"refers to {binding['roleRef']['name']}, which the chart does not render")
            continue
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount" and subject.get("namespace") != namespace:
                problem(name_of(binding), f"binds a ServiceAccount outside {namespace}")
            granted.setdefault(subject["name"], set()).update(rules_of(role))
            if role["kind"] == "Role" and role["metadata"].get("namespace") != binding["metadata"].get("namespace"):
                problem(name_of(binding), "binds a Role of another namespace")
    for sa in by_kind.get("ServiceAccount", []):
        component = sa["metadata"]["labels"]["app.kubernetes.io/component"]
        got = granted.get(sa["metadata"]["name"], set())
        if component == "operator":
            lease = {r for r in got if r[0] == "coordination.k8s.io"}
            want = (
                OPERATOR_RULES
                | (CONTAIN_RULES if operator_flag(by_kind, "AGENTGOV_CONTAIN_PODS") else set())
                | (WORKLOAD_RULES if operator_flag(by_kind, "AGENTGOV_MANAGE_WORKLOADS") else set())
                | (REPORT_RULES if operator_flag(by_kind, "AGENTGOV_POLICY_REPORTS") else set())
            )
            if lease:
                lease_names = {r[3] for r in lease if r[2] != "create"}
                if {r[2] for r in lease} != {"create", "get", "update", "patch"} or len(lease_names) != 1 or () in lease_names:
                    problem("operator RBAC", f"Lease rules {sorted(lease)}: want create, and get/update/patch on the one Lease")
                lease_roles = [r for r in by_kind.get("Role", []) if any(x[0] == "coordination.k8s.io" for x in rules_of(r))]
                if any(r["metadata"]["namespace"] != namespace for r in lease_roles):
                    problem("operator RBAC", "Lease access outside the release namespace")
            extra, missing = got - want - lease, want - got
        else:
            want = WEBHOOK_RULES | {("authorization.k8s.io", "subjectaccessreviews", "create", ())}
            extra, missing = got - want, want - got
        if extra:
            problem(f"{component} RBAC", f"more than it needs: {sorted(extra)}")
        if missing:
            problem(f"{component} RBAC", f"missing: {sorted(missing)}")
    admin = {r["metadata"]["name"]: rules_of(r) for r in by_kind.get("ClusterRole", [])}
    for name in ("agentgov-agent-admin", "agentgov-policy-admin"):
        if name in admin and ("agentgov.dev", "agents", "promote", ()) not in admin[name]:
            problem(name, "does not grant promote on agents.agentgov.dev")
        if name in admin and ("agentgov.dev", "agents", "extend", ()) in admin[name]:
            problem(name, "grants extend (a sandbox's life is fixed; extend has its own role)")
    # `except` (waiving policy rules with an AgentException) is the policy admin's alone.
    if "agentgov-policy-admin" in admin and ("agentgov.dev", "agents", "except", ()) not in admin["agentgov-policy-admin"]:
        problem("agentgov-policy-admin", "does not grant except on agents.agentgov.dev")
    for name, rules in admin.items():
        if name != "agentgov-policy-admin" and any(r[2] == "except" for r in rules):
            problem(name, "grants except (only agentgov-policy-admin may waive policy rules)")
    extender = admin.get("agentgov-sandbox-extender")
    if "agentgov-agent-admin" in admin and (extender is None or ("agentgov.dev", "agents", "extend", ()) not in extender):
        problem("agentgov-sandbox-extender", "missing, or does not grant extend on agents.agentgov.dev")


DEPLOYED = "deploy/webhook/validating-webhook-configuration.yaml"
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", DEPLOYED)) as _f:
    DEPLOYED_HOOKS = {h["name"]: h for h in yaml.safe_load(_f)["webhooks"]}


def check_webhook_registration(by_kind, namespace):
    vwcs = by_kind.get("ValidatingWebhookConfiguration", [])
    if len(vwcs) != 1:
        problem("ValidatingWebhookConfiguration", f"expected one, got {len(vwcs)}")
        return
    vwc = vwcs[0]
    hooks = {h["name"]: h for h in vwc["webhooks"]}
    want = {
        "pods.validate.agentgov.dev": ("/validate/pods", "", ["pods", "pods/ephemeralcontainers"], ["CREATE", "UPDATE"]),
        "agents.validate.agentgov.dev": ("/validate/agents", "agentgov.dev", ["agents"], ["CREATE", "UPDATE"]),
        "agentpromotions.validate.agentgov.dev": ("/validate/agentpromotions", "agentgov.dev", ["agentpromotions"], ["CREATE"]),
        "policybundles.validate.agentgov.dev": ("/validate/policybundles", "agentgov.dev", ["policybundles"], ["CREATE", "UPDATE"]),
        "sandboxes.validate.agentgov.dev": ("/validate/sandboxes", "agents.x-k8s.io", ["sandboxes"], ["CREATE", "UPDATE"]),
    }
    if set(hooks) != set(want):
        problem("VWC", f"webhooks {sorted(hooks)}")
        return
    tls = [s for s in by_kind.get("Secret", []) if s.get("type") == "kubernetes.io/tls"]
    certificates = {c["metadata"]["name"]: c for c in by_kind.get("Certificate", [])}
    inject = (vwc["metadata"].get("annotations") or {}).get("cert-manager.io/inject-ca-from")
    for name, (path, group, resource, operations) in want.items():
        h, where = hooks[name], f"webhook {name}"
        if h.get("sideEffects") != "None":
            problem(where, "sideEffects is not None")
        if h.get("failurePolicy") != "Fail":
            problem(where, "failurePolicy is not Fail")
        if not 1 <= h.get("timeoutSeconds", 10) <= 10:
            problem(where, f"timeoutSeconds {h.get('timeoutSeconds')} is not short (1-10)")
        if h.get("admissionReviewVersions") != ["v1"]:
            problem(where, "admissionReviewVersions is not [v1]")
        service = h["clientConfig"].get("service") or {}
        if service.get("path") != path or service.get("namespace") != namespace:
            problem(where, f"clientConfig.service {service}")
        rules = h["rules"]
        expected = [([group], resource, sorted(operations))]
        if name == "policybundles.validate.agentgov.dev":
            # The cluster floor is reviewed by the same hook, in a rule of its own (scope Cluster).
            expected.append(([group], ["clusterpolicybundles"], sorted(operations)))
        if [(r["apiGroups"], r["resources"], sorted(r["operations"])) for r in rules] != expected:
            problem(where, f"rules {rules}: want {operations} on {resource} only (no other subresources, no DELETE)")
        # Rules, objectSelector and matchConditions are the same as in the registration `make run`
        # and the e2e tests use (deploy/webhook/validating-webhook-configuration.yaml).
        reference = DEPLOYED_HOOKS.get(name, {})
        for field in ("rules", "objectSelector", "matchConditions"):
            if h.get(field) != reference.get(field):
                problem(where, f"{field} differs from {DEPLOYED}: {h.get(field)} != {reference.get(field)}")
        excluded = set()
        for expr in h["namespaceSelector"].get("matchExpressions", []):
            if expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "NotIn":
                excluded.update(expr["values"])
        if not {"kube-system", namespace} <= excluded:
            problem(where, f"namespaceSelector excludes {sorted(excluded)}, not kube-system and {namespace}")
        if tls:
            ca = tls[0]["data"]["ca.crt"]
            if h["clientConfig"].get("caBundle") != ca:
                problem(where, "caBundle is not the ca.crt of the generated Secret")
            if b"BEGIN CERTIFICATE" not in base64.b64decode(ca):
                problem(where, "caBundle is not a PEM certificate")
        elif not inject or inject.split("/", 1)[-1] not in certificates:
            problem(where, "neither a caBundle nor cert-manager.io/inject-ca-from naming a Certificate")
    selector = hooks["pods.validate.agentgov.dev"].get("objectSelector", {}).get("matchExpressions", [])
    if {"key": "agentgov.dev/agent", "operator": "Exists"} not in selector:
        problem("pods webhook", "objectSelector does not select Pods labelled agentgov.dev/agent")
    if not hooks["agents.validate.agentgov.dev"].get("matchConditions"):
        problem("agents webhook", "no matchConditions (metadata-only updates would be sent)")
    # A Sandbox's pod template alone may name the agent, which an objectSelector cannot see.
    sandboxes = hooks["sandboxes.validate.agentgov.dev"]
    if sandboxes.get("objectSelector") or not sandboxes.get("matchConditions"):
        problem("sandboxes webhook", "selects by objectSelector, or has no matchConditions (a template label alone would slip through, or status writes be sent)")


GUARD_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
GUARDS = "crds/guards/admission-policies.yaml"
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
MAP_API = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"


def check_guards(by_kind, where="admission guards"):
    """The chart installs the admission guards exactly as shipped (the operator signs nothing
    while one differs): all of them, or, where the API server serves no MutatingAdmissionPolicy,
    the validating ones alone; never another subset. Returns "full", "validating-only" or None."""
    with open(os.path.join(REPO, GUARDS)) as f:
        shipped = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(f) if o}
    validating = {key for key in shipped if not key[0].startswith("Mutating")}
    rendered = {(o["kind"], o["metadata"]["name"]): o for k in GUARD_KINDS for o in by_kind.get(k, [])}
    if set(rendered) == set(shipped):
        mode = "full"
    elif set(rendered) == validating:
        mode = "validating-only"
    else:
        problem(where, f"rendered {sorted(rendered)}, shipped {sorted(shipped)}")
        return None
    for key, obj in rendered.items():
        if obj.get("spec") != shipped[key].get("spec"):
            problem(where, f"{key[0]} {key[1]} differs from {GUARDS}")
    return mode


def check_guard_capabilities(namespace):
    """The MutatingAdmissionPolicies are rendered exactly where the API server serves them: as a
    cluster's kinds say (helm install, Argo CD, Flux), or, rendered without a cluster (`helm
    template` lists no kinds), as the Kubernetes version says (MutatingAdmissionPolicy is GA in
    1.36). Renders the chart's guards with helm (on PATH) for each case."""
    cases = [
        ([], "full"),  # helm template's default version: the 1.37 it is built against
        (["--kube-version", "1.36.0"], "full"),
        (["--kube-version", "1.35.0"], "validating-only"),
        (["--kube-version", "1.30.0"], "validating-only"),
        # A cluster's kinds win over its version: 1.37 with the API switched off, 1.35, 1.36+.
        (["--api-versions", VAP_API], "validating-only"),
        (["--api-versions", VAP_API, "--kube-version", "1.35.0"], "validating-only"),
        (["--api-versions", VAP_API, "--api-versions", MAP_API], "full"),
    ]
    for args, want in cases:
        where = f"admission guards (helm template {' '.join(args) or 'without a cluster'})"
        out = subprocess.run(
            ["helm", "template", "agentgov", os.path.join(REPO, "charts", "agentgov"), "--namespace", namespace,
             "-f", os.path.join(REPO, "e2e", "chart", "values", "minimal.yaml"),
             "--show-only", "templates/admission-policies.yaml", *args],
            capture_output=True, text=True, check=False)
        if out.returncode != 0:
            problem(where, f"helm template failed: {out.stderr.strip()}")
            continue
        by_kind = {}
        for obj in yaml.safe_load_all(out.stdout):
            if obj:
                by_kind.setdefault(obj["kind"], []).append(obj)
        got = check_guards(by_kind, where)
        if got is not None and got != want:
            problem(where, f"rendered the {got} set of guards, expected {want}")


def main():
    namespace, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        objs = [o for o in yaml.safe_load_all(f) if o]
    by_kind = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], []).append(obj)
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            check_pod_security(obj)
    check_deployments(by_kind, namespace)
    check_env_names(by_kind)
    check_rbac(by_kind, namespace)
    check_webhook_registration(by_kind, namespace)
    check_guards(by_kind)
    if os.path.basename(path) == "minimal.yaml":  # once per run: the guards take no other values
        check_guard_capabilities(namespace)
    for p in PROBLEMS:
        print(f"  {path}: {p}")
    sys.exit(1 if PROBLEMS else 0)


if __name__ == "__main__":
    main()
