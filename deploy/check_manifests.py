#!/usr/bin/env python3
"""Structural checks of SwiftMDM's deployment files, run by deploy/check.

  check_manifests.py k8s DIR [RENDERED.yaml]   deploy/k8s (and `kubectl kustomize` output)
  check_manifests.py compose CONFIG.yaml        output of `docker-compose config`
  check_manifests.py dockerfile REPO_ROOT       deploy/Dockerfile, entry point, .dockerignore

Prints one line per finding and a count; exit status 1 when anything is wrong. Needs PyYAML.
These complement schema validation (kubernetes-validate, docker-compose config): they check
what a schema cannot, such as selectors matching labels, probes on every container, an HPA's
target existing, and the role names and ports agreeing across files.
"""

import os
import re
import sys

import yaml

ROLES = {
    "APIService": ("api", 9000),
    "CheckinService": ("checkin", 9001),
    "CommandService": ("command", 9002),
    "PushService": ("push", 9003),
}
# Secrets and ConfigMaps the manifests use but do not define.
EXTERNAL = {("Secret", "swiftmdm-tls")}

problems = []
checked = []


def problem(msg):
    problems.append(msg)


def ok(msg):
    checked.append(msg)


def template_placeholders(repo):
    with open(os.path.join(repo, "deploy/nginx/swiftmdm.conf.template")) as f:
        text = f.read()
    # Only the directives, not the comments that explain them.
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return set(re.findall(r"\$\{(SWIFTMDM_[A-Z_]+)\}", code))


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- Kubernetes ---------------------------------------------------------------------


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc.get("spec", {}).get("template", {}).get("spec", {})
    return None


def check_k8s(directory, rendered=None):
    repo = repo_root()
    files = sorted(f for f in os.listdir(directory) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
    docs = []
    for name in files:
        for doc in load_docs(os.path.join(directory, name)):
            docs.append((name, doc))
    ok("parsed %d documents from %d files in %s" % (len(docs), len(files), directory))

    with open(os.path.join(directory, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    resources = kustomization.get("resources", [])
    missing = sorted(set(files) - set(resources))
    if missing:
        problem("kustomization.yaml does not list: %s" % ", ".join(missing))
    for res in resources:
        path = os.path.normpath(os.path.join(directory, res))
        if not os.path.exists(path):
            problem("kustomization.yaml lists %s, which does not exist" % res)
    generated = set()
    for res in resources:
        sub = os.path.normpath(os.path.join(directory, res, "kustomization.yaml"))
        if os.path.isfile(sub):
            with open(sub) as f:
                k = yaml.safe_load(f)
            for gen in k.get("configMapGenerator", []):
                generated.add(("ConfigMap", gen["name"]))
                for file in gen.get("files", []):
                    file = file.split("=", 1)[-1]
                    if not os.path.isfile(os.path.join(os.path.dirname(sub), file)):
                        problem("%s: configMapGenerator file %s is missing" % (sub, file))
    ok("kustomization.yaml lists every manifest; generated: %s" % sorted(n for _, n in generated))

    defined = set()
    for name, doc in docs:
        where = "%s: %s/%s" % (name, doc.get("kind"), doc.get("metadata", {}).get("name"))
        for field in ("apiVersion", "kind"):
            if not doc.get(field):
                problem("%s: no %s" % (name, field))
        if not doc.get("metadata", {}).get("name"):
            problem("%s: a %s without metadata.name" % (name, doc.get("kind")))
        defined.add((doc.get("kind"), doc.get("metadata", {}).get("name")))
    available = defined | generated | EXTERNAL

    deployments = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "Deployment"}
    hpa_targets = set()
    for name, doc in docs:
        kind, meta = doc.get("kind"), doc.get("metadata", {})
        where = "%s: %s/%s" % (name, kind, meta.get("name"))
        spec = pod_spec(doc)
        if spec is not None:
            template_labels = doc["spec"]["template"].get("metadata", {}).get("labels", {})
            if kind != "Job":
                selector = doc["spec"].get("selector", {}).get("matchLabels", {})
                if not labels_match(selector, template_labels):
                    problem("%s: selector %s does not match the pod labels %s" % (where, selector, template_labels))
            containers = spec.get("containers", [])
            if not containers:
                problem("%s: no containers" % where)
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for c in containers:
                cwhere = "%s container %s" % (where, c.get("name"))
                if not c.get("image"):
                    problem("%s: no image" % cwhere)
                res = c.get("resources", {})
                for r in ("cpu", "memory"):
                    if r not in res.get("requests", {}):
                        problem("%s: no resources.requests.%s" % (cwhere, r))
                if "memory" not in res.get("limits", {}):
                    problem("%s: no resources.limits.memory" % cwhere)
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                if kind == "Deployment":
                    for probe in ("readinessProbe", "livenessProbe"):
                        p = c.get(probe)
                        if not p:
                            problem("%s: no %s" % (cwhere, probe))
                            continue
                        port = p.get("httpGet", p.get("tcpSocket", {})).get("port")
                        if isinstance(port, str) and port not in ports:
                            problem("%s: %s uses port %r, which the container does not declare" % (cwhere, probe, port))
                args = c.get("args") or []
                if args and args[0] in ROLES:
                    role, port = ROLES[args[0]]
                    env = {e["name"]: e.get("value") for e in c.get("env", [])}
                    if kind == "Deployment":
                        if env.get("MDM_LISTEN") != "0.0.0.0:%d" % port:
                            problem("%s: MDM_LISTEN should be 0.0.0.0:%d, is %r" % (cwhere, port, env.get("MDM_LISTEN")))
                        if port not in ports.values():
                            problem("%s: containerPort %d not declared" % (cwhere, port))
                        paths = (
                            c.get("readinessProbe", {}).get("httpGet", {}).get("path"),
                            c.get("livenessProbe", {}).get("httpGet", {}).get("path"),
                        )
                        if paths != ("/readyz", "/livez"):
                            problem("%s: probes should be /readyz (readiness) and /livez (liveness), are %s" % (cwhere, paths))
                    sec = c.get("securityContext", {})
                    if not sec.get("readOnlyRootFilesystem") or sec.get("allowPrivilegeEscalation", True):
                        problem("%s: should run with readOnlyRootFilesystem and without privilege escalation" % cwhere)
                    for e in c.get("env", []):
                        if e["name"].endswith("_FILE"):
                            mounted = any(e["value"].startswith(m["mountPath"] + "/") for m in c.get("volumeMounts", []))
                            if not mounted:
                                problem("%s: %s=%s is not under a mounted volume" % (cwhere, e["name"], e["value"]))
                for m in c.get("volumeMounts", []):
                    if m["name"] not in volumes:
                        problem("%s: volumeMount %s has no volume" % (cwhere, m["name"]))
                for ef in c.get("envFrom", []):
                    for key, k in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                        if key in ef and (k, ef[key]["name"]) not in available:
                            problem("%s: envFrom %s %s is not defined" % (cwhere, k, ef[key]["name"]))
            if spec.get("securityContext", {}).get("runAsNonRoot") is not True and any(
                (c.get("args") or [""])[0] in ROLES for c in containers
            ):
                problem("%s: SwiftMDM pods should set runAsNonRoot" % where)
            for v in spec.get("volumes", []):
                if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in available:
                    problem("%s: volume %s uses ConfigMap %s, which is not defined" % (where, v["name"], v["configMap"]["name"]))
                if "secret" in v and ("Secret", v["secret"]["secretName"]) not in available:
                    problem("%s: volume %s uses Secret %s, which is not defined" % (where, v["name"], v["secret"]["secretName"]))
        if kind == "Service":
            selector = doc["spec"].get("selector", {})
            targets = [
                d for d in deployments.values() if labels_match(selector, d["spec"]["template"]["metadata"].get("labels", {}))
            ]
            if not targets:
                problem("%s: selector %s matches no Deployment" % (where, selector))
            for p in doc["spec"].get("ports", []):
                tp = p.get("targetPort", p.get("port"))
                for d in targets:
                    declared = set()
                    for c in d["spec"]["template"]["spec"]["containers"]:
                        for cp in c.get("ports", []):
                            declared.update((cp.get("name"), cp["containerPort"]))
                    if tp not in declared:
                        problem("%s: targetPort %r is not a port of Deployment %s" % (where, tp, d["metadata"]["name"]))
        if kind == "HorizontalPodAutoscaler":
            ref = doc["spec"]["scaleTargetRef"]
            target = deployments.get(ref["name"]) if ref.get("kind") == "Deployment" else None
            if target is None:
                problem("%s: scaleTargetRef %s/%s does not exist" % (where, ref.get("kind"), ref.get("name")))
            else:
                hpa_targets.add(ref["name"])
                if "replicas" in target["spec"]:
                    problem("%s: Deployment %s sets spec.replicas, which fights the HPA on every apply" % (where, ref["name"]))
                uses_cpu = any(m.get("resource", {}).get("name") == "cpu" for m in doc["spec"].get("metrics", []))
                for c in target["spec"]["template"]["spec"]["containers"]:
                    if uses_cpu and "cpu" not in c.get("resources", {}).get("requests", {}):
                        problem("%s: CPU utilisation needs cpu requests in %s" % (where, ref["name"]))
            if doc["spec"].get("minReplicas", 1) > doc["spec"].get("maxReplicas", 0):
                problem("%s: minReplicas > maxReplicas" % where)
        if kind == "PodDisruptionBudget":
            selector = doc["spec"].get("selector", {}).get("matchLabels", {})
            if not any(labels_match(selector, d["spec"]["template"]["metadata"].get("labels", {})) for d in deployments.values()):
                problem("%s: selector matches no Deployment" % where)

    roles_seen = set()
    for d in deployments.values():
        for c in d["spec"]["template"]["spec"]["containers"]:
            if (c.get("args") or [""])[0] in ROLES:
                roles_seen.add(c["args"][0])
    if roles_seen != set(ROLES):
        problem("Deployments for roles: %s; expected all of %s" % (sorted(roles_seen), sorted(ROLES)))
    command = [n for n, d in deployments.items() if (d["spec"]["template"]["spec"]["containers"][0].get("args") or [""])[0] == "CommandService"]
    if not command or command[0] not in hpa_targets:
        problem("CommandService has no HorizontalPodAutoscaler")
    jobs = [d for _, d in docs if d.get("kind") == "Job"]
    if not any((c.get("args") or [])[:2] == ["APIService", "migrate"] for j in jobs for c in pod_spec(j)["containers"]):
        problem("no Job runs APIService migrate")
    proxy = [d for d in deployments.values() if "nginx" in d["spec"]["template"]["spec"]["containers"][0].get("image", "")]
    if proxy:
        env = {e["name"] for e in proxy[0]["spec"]["template"]["spec"]["containers"][0].get("env", []) if e["name"].startswith("SWIFTMDM_")}
        want = template_placeholders(repo)
        if env != want:
            problem("proxy Deployment sets %s; the nginx template needs %s" % (sorted(env), sorted(want)))
    else:
        problem("no nginx proxy Deployment")
    ok("labels, selectors, probes, resources, ports, references and HPA targets of %d Deployments, %d Services"
       % (len(deployments), sum(1 for _, d in docs if d.get("kind") == "Service")))

    if rendered:
        rdocs = load_docs(rendered)
        names = {(d["kind"], d["metadata"]["name"]) for d in rdocs}
        ns = {d["metadata"].get("namespace") for d in rdocs if d["kind"] != "Namespace"}
        if len(ns) != 1 or None in ns:
            problem("kustomize output: resources should all share one namespace, found %s" % ns)
        nginx_cm = [n for k, n in names if k == "ConfigMap" and n.startswith("swiftmdm-nginx-")]
        if not nginx_cm:
            problem("kustomize output: no hashed swiftmdm-nginx ConfigMap")
        text = open(rendered).read()
        if nginx_cm and text.count(nginx_cm[0]) < 3:
            problem("kustomize output: the proxy does not reference %s" % nginx_cm[0])
        images = set(re.findall(r"image: (\S+)", text))
        if "swiftmdm" in images:
            problem("kustomize output: image 'swiftmdm' was not replaced by the images: transformer")
        ok("kustomize output: %d resources, namespace %s, images %s" % (len(rdocs), ns, sorted(images)))


# --- Compose -------------------------------------------------------------------------


def check_compose(config_path):
    with open(config_path) as f:
        config = yaml.safe_load(f)
    services = config.get("services", {})
    want = {"postgres", "redis", "migrate", "api", "checkin", "command", "push", "nginx"}
    if set(services) != want:
        problem("compose services are %s, expected %s" % (sorted(services), sorted(want)))
    role_by_service = {"api": "APIService", "checkin": "CheckinService", "command": "CommandService", "push": "PushService"}
    for name, exe in role_by_service.items():
        s = services.get(name, {})
        cmd = s.get("command") or []
        if cmd[:1] != [exe]:
            problem("compose %s: command should start with %s, is %s" % (name, exe, cmd))
        port = ROLES[exe][1]
        env = s.get("environment", {})
        if env.get("MDM_LISTEN") != "0.0.0.0:%d" % port:
            problem("compose %s: MDM_LISTEN should be 0.0.0.0:%d" % (name, port))
        test = " ".join(s.get("healthcheck", {}).get("test", []))
        if "http://127.0.0.1:%d/readyz" % port not in test:
            problem("compose %s: healthcheck should GET /readyz on port %d, is %r" % (name, port, test))
        dep = s.get("depends_on", {})
        if dep.get("migrate", {}).get("condition") != "service_completed_successfully":
            problem("compose %s: should depend on migrate completing successfully" % name)
        for file_setting in ("MDM_DATABASE_URL_FILE", "MDM_API_KEY_FILE", "MDM_CA_CERTS"):
            value = env.get(file_setting)
            if value and value.startswith("/run/secrets/"):
                secret = value[len("/run/secrets/"):]
                if secret not in [x["source"] if isinstance(x, dict) else x for x in s.get("secrets", [])]:
                    problem("compose %s: %s=%s but secret %s is not mounted" % (name, file_setting, value, secret))
        if s.get("image") != services.get("migrate", {}).get("image"):
            problem("compose %s: should use the same image as migrate" % name)
    for name in ("checkin", "command"):
        if "MDM_CA_CERTS" not in services.get(name, {}).get("environment", {}):
            problem("compose %s: MDM_CA_CERTS is required" % name)
    if services.get("migrate", {}).get("command") != ["APIService", "migrate"]:
        problem("compose migrate: command should be APIService migrate")
    if services.get("migrate", {}).get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
        problem("compose migrate: should wait for postgres to be healthy")
    command = services.get("command", {})
    if command.get("scale") != 2 or command.get("deploy", {}).get("replicas") != 2:
        problem("compose command: scale and deploy.replicas should both be 2")
    nginx = services.get("nginx", {})
    env = {k for k in nginx.get("environment", {}) if k.startswith("SWIFTMDM_")}
    want_env = template_placeholders(repo_root())
    if env != want_env:
        problem("compose nginx sets %s; the template needs %s" % (sorted(env), sorted(want_env)))
    mounts = " ".join(str(v) for v in nginx.get("volumes", []))
    for part in ("swiftmdm.conf.template", "/etc/nginx/swiftmdm"):
        if part not in mounts:
            problem("compose nginx: %s is not mounted" % part)
    for dep in ("api", "checkin", "command"):
        if nginx.get("depends_on", {}).get(dep, {}).get("condition") != "service_healthy":
            problem("compose nginx: should wait for %s to be healthy" % dep)
    declared = set(config.get("secrets", {}))
    for name, s in services.items():
        for x in s.get("secrets", []):
            src = x["source"] if isinstance(x, dict) else x
            if src not in declared:
                problem("compose %s: secret %s is not declared" % (name, src))
        if "healthcheck" not in s and name != "migrate":
            problem("compose %s: no healthcheck" % name)
    ok("compose: %d services, role commands, ports, /readyz health checks, depends_on conditions, "
       "command scale 2, secrets, nginx template variables" % len(services))


# --- Dockerfile ----------------------------------------------------------------------


def check_dockerfile(repo):
    path = os.path.join(repo, "deploy/Dockerfile")
    with open(path) as f:
        lines = f.read().replace("\\\n", " ").splitlines()
    instructions = [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in instructions if l.upper().startswith("FROM ")]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(instructions), re.M))
    if len(froms) < 2:
        problem("Dockerfile: expected a build stage and a runtime stage, found %d FROM" % len(froms))
    else:
        base = froms[0].split()[1]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        if not base.startswith("swift:") or " AS build" not in froms[0].replace(" as ", " AS "):
            problem("Dockerfile: first stage should be a swift image named build, is %r" % froms[0])
        runtime = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), froms[-1].split()[1])
        if not (runtime.startswith("debian:") or runtime.startswith("swift:")) or "slim" not in runtime:
            problem("Dockerfile: runtime stage should be a slim Debian (or swift slim) image, is %r" % runtime)
    final = instructions[instructions.index(froms[-1]):] if froms else []
    runs = " ".join(l for l in instructions if l.upper().startswith("RUN "))
    if "swift build -c release" not in runs or "--static-swift-stdlib" not in runs:
        problem("Dockerfile: no `swift build -c release --static-swift-stdlib`")
    users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem("Dockerfile: the runtime stage must switch to a non-root USER")
    entry = [l for l in final if l.upper().startswith("ENTRYPOINT ")]
    if not entry or not entry[-1].split(None, 1)[1].startswith("["):
        problem("Dockerfile: ENTRYPOINT should use the exec (JSON) form")
    if "curl" not in " ".join(l for l in final if l.upper().startswith("RUN ")):
        problem("Dockerfile: the runtime image needs curl for health checks")
    for l in instructions:
        if l.upper().startswith("COPY ") and "--from=" not in l:
            parts = l.split()[1:-1]
            for src in parts:
                if "*" in src:
                    continue
                if not os.path.exists(os.path.join(repo, src)):
                    problem("Dockerfile: COPY source %s does not exist" % src)
    # The role list agrees with Package.swift and with the entry point.
    with open(os.path.join(repo, "Package.swift")) as f:
        package = f.read()
    products = set(re.findall(r'\.executable\(name:\s*"([^"]+)"', package))
    missing = set(ROLES) - products
    if missing:
        problem("Package.swift has no executable product for %s" % sorted(missing))
    loop = re.search(r"for role in ([^;]+);", runs)
    in_docker = set(loop.group(1).split()) if loop else set()
    if in_docker != set(ROLES):
        problem("Dockerfile installs %s, expected %s" % (sorted(in_docker), sorted(ROLES)))
    with open(os.path.join(repo, "deploy/container-entrypoint")) as f:
        entrypoint = f.read()
    for exe, (short, port) in ROLES.items():
        if not re.search(r"%s \| %s\) role=%s port=%d" % (exe, short, exe, port), entrypoint):
            problem("deploy/container-entrypoint does not map %s/%s to port %d" % (exe, short, port))
    with open(os.path.join(repo, ".dockerignore")) as f:
        ignored = {l.strip().strip("/") for l in f if l.strip() and not l.startswith("#")}
    for must in (".build", ".stack", ".git"):
        if must not in ignored:
            problem(".dockerignore should exclude %s" % must)
    ok("Dockerfile: %d stages, static release build, non-root user, exec ENTRYPOINT, COPY sources, "
       "roles agree with Package.swift and the entry point; .dockerignore" % len(froms))


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    what = argv[1]
    if what == "k8s":
        check_k8s(argv[2], argv[3] if len(argv) > 3 else None)
    elif what == "compose":
        check_compose(argv[2])
    elif what == "dockerfile":
        check_dockerfile(argv[2])
    else:
        print(__doc__)
        return 2
    for c in checked:
        print("  checked: %s" % c)
    for p in problems:
        print("  problem: %s" % p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
