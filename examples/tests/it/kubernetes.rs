//! Reads the manifests of `examples/kubernetes` and checks that they agree with the code
//! they deploy: the label and port the Kubernetes discovery strategy looks for, the one
//! API request it makes (for the RBAC), the node's environment variables, and the
//! runtime's HTTP endpoints (for the probes).
//!
//! Nothing here talks to a Kubernetes cluster: the manifests are parsed as plain YAML.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use foundation::cluster::discovery::{
    Choice, KUBERNETES_CLUSTER_LABEL, NodeInfo, Peer, detect, strategy_for,
};
use foundation::cluster::node::{DEFAULT_PORT, NodeConfig, unknown_variables};
use foundation::serde::Deserialize;
use serde_yaml::Value;

/// The files of `examples/kubernetes` that hold manifests, with the kinds each must hold.
const FILES: &[(&str, &[&str])] = &[
    ("rbac.yaml", &["ServiceAccount", "Role", "RoleBinding"]),
    ("secret.yaml", &["Secret"]),
    ("service.yaml", &["Service"]),
    ("statefulset.yaml", &["StatefulSet"]),
    ("pdb.yaml", &["PodDisruptionBudget"]),
];

/// The verbs the Kubernetes strategy uses: one `list` per poll (`Api::list` in
/// `foundation-cluster`'s `discovery/kubernetes.rs`); no watch, no get, no write.
const STRATEGY_VERBS: &[&str] = &["list"];

/// The resources it lists: `pods` (core group) for `Kubernetes::pods`, the default of
/// `strategy_for`; `endpointslices` (`discovery.k8s.io`) for `Kubernetes::service`.
const STRATEGY_RESOURCES: &[(&str, &str)] = &[("", "pods"), ("discovery.k8s.io", "endpointslices")];

/// The variables the application runtime (`foundation::Foundation::start`) reads beside
/// the node's own ([`foundation::cluster::node::ENV_VARIABLES`]).
const RUNTIME_VARIABLES: &[&str] = &["FOUNDATION_HTTP_LISTEN", "FOUNDATION_HTTP_TOKEN"];

/// The runtime's health endpoints, which answer without a token.
const LIVE_PATH: &str = "/health/live";
const READY_PATH: &str = "/health/ready";

/// The runtime's shutdown timeout by default: how long a node may spend handing off and
/// leaving. SIGTERM must come this long, and more, before the SIGKILL.
const SHUTDOWN_TIMEOUT: Duration = foundation::runtime::config::DEFAULT_SHUTDOWN_TIMEOUT;

/// The name and IP a pod is given in [`Manifests::pod_env`].
const POD_NAME: &str = "foundation-app-0";
const POD_IP: &str = "10.244.1.7";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kubernetes")
}

/// One object of a manifest file.
struct Object {
    file: String,
    doc: Value,
}

impl Object {
    fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("?")
    }

    fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("?")
    }

    /// What the object holds at `path` (field names separated by dots), or a panic that
    /// says which object lacks what.
    fn at(&self, path: &str) -> &Value {
        at(&self.doc, path).unwrap_or_else(|| panic!("{self} has no `{path}`"))
    }

    fn str_at(&self, path: &str) -> &str {
        let v = self.at(path);
        v.as_str()
            .unwrap_or_else(|| panic!("{self}: `{path}` is not a string: {v:?}"))
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}` ({})", self.kind(), self.name(), self.file)
    }
}

/// The value at `path` below `v`, field by field.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, field| v.get(field))
        .filter(|v| !v.is_null())
}

/// A mapping's string entries (labels, a selector).
fn string_map(v: &Value, what: &str) -> BTreeMap<String, String> {
    v.as_mapping()
        .unwrap_or_else(|| panic!("{what} is not a mapping: {v:?}"))
        .iter()
        .map(|(k, v)| {
            let s = |x: &Value| {
                x.as_str()
                    .unwrap_or_else(|| panic!("{what}: `{x:?}` is not a string"))
                    .to_owned()
            };
            (s(k), s(v))
        })
        .collect()
}

/// The strings of a sequence (a rule's verbs, resources, API groups).
fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_sequence)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a non-negative number: {v:?}"))
}

/// Every object of every manifest file of `examples/kubernetes`.
struct Manifests {
    objects: Vec<Object>,
}

impl Manifests {
    /// Reads every `.yaml` file of the directory; a file of [`FILES`] that is missing,
    /// does not parse or lacks one of its kinds fails the test, saying so.
    fn load() -> Self {
        let dir = dir();
        let mut missing = String::new();
        for (file, kinds) in FILES {
            if !dir.join(file).is_file() {
                let _ = writeln!(
                    missing,
                    "examples/kubernetes/{file} is missing (it holds the {})",
                    kinds.join(", ")
                );
            }
        }
        assert!(missing.is_empty(), "{missing}");

        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        paths.sort();
        let mut objects = Vec::new();
        for path in paths {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
                let doc = Value::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{file}, document {}: not YAML: {e}", i + 1));
                // A document of comments only.
                if doc.is_null() {
                    continue;
                }
                let object = Object {
                    file: file.clone(),
                    doc,
                };
                for field in ["apiVersion", "kind", "metadata.name"] {
                    object.str_at(field);
                }
                objects.push(object);
            }
        }
        let manifests = Self { objects };
        for (file, kinds) in FILES {
            for kind in *kinds {
                assert!(
                    manifests
                        .objects
                        .iter()
                        .any(|o| o.file == *file && o.kind() == *kind),
                    "examples/kubernetes/{file} holds no {kind}"
                );
            }
        }
        manifests
    }

    /// The one object of `kind`.
    fn one(&self, kind: &str) -> &Object {
        let mut found = self.objects.iter().filter(|o| o.kind() == kind);
        let first = found
            .next()
            .unwrap_or_else(|| panic!("no {kind} in examples/kubernetes"));
        if let Some(second) = found.next() {
            panic!("two {kind}s: {first} and {second}");
        }
        first
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Object> {
        self.objects
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
    }

    /// The nodes' workload: the StatefulSet, or a Deployment if that is what is shipped.
    fn workload(&self) -> &Object {
        let found: Vec<&Object> = self
            .objects
            .iter()
            .filter(|o| matches!(o.kind(), "StatefulSet" | "Deployment"))
            .collect();
        match found[..] {
            [one] => one,
            [] => panic!("no StatefulSet or Deployment in examples/kubernetes"),
            _ => panic!("more than one workload: expected one StatefulSet or Deployment"),
        }
    }

    /// The pod template's labels.
    fn pod_labels(&self) -> BTreeMap<String, String> {
        let w = self.workload();
        string_map(
            w.at("spec.template.metadata.labels"),
            &format!("{w}'s pod labels"),
        )
    }

    /// The node's container: the one with a port named `cluster`.
    fn container(&self) -> &Value {
        let w = self.workload();
        w.at("spec.template.spec.containers")
            .as_sequence()
            .unwrap_or_else(|| panic!("{w}: containers is not a list"))
            .iter()
            .find(|c| named_port(c, "cluster").is_some())
            .unwrap_or_else(|| panic!("{w}: no container has a port named `cluster`"))
    }

    /// The container's port named `name`.
    fn port(&self, name: &str) -> u16 {
        let port = named_port(self.container(), name)
            .unwrap_or_else(|| panic!("the node's container has no port named `{name}`"));
        u16::try_from(as_u64(&port["containerPort"])).unwrap()
    }

    /// The container's variable `name`, as declared (`value` or `valueFrom`).
    fn env_entry(&self, name: &str) -> Option<&Value> {
        self.container()["env"]
            .as_sequence()?
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
    }

    /// The literal value of the container's variable `name`.
    fn env_value(&self, name: &str) -> &str {
        let entry = self
            .env_entry(name)
            .unwrap_or_else(|| panic!("the node's container does not set {name}"));
        entry["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no literal value: {entry:?}"))
    }

    /// The container's environment as the kubelet would make it for pod [`POD_NAME`]
    /// with IP [`POD_IP`]: field references resolved, secrets read from the Secret
    /// manifests, `$(VAR)` references to earlier variables expanded.
    fn pod_env(&self) -> BTreeMap<String, String> {
        // Set by the container runtime: the pod's host name is its name.
        let mut env = BTreeMap::from([("HOSTNAME".to_owned(), POD_NAME.to_owned())]);
        for entry in self.container()["env"].as_sequence().into_iter().flatten() {
            let name = entry["name"].as_str().unwrap().to_owned();
            let value = if let Some(value) = entry["value"].as_str() {
                expand(value, &env)
            } else if let Some(path) = at(entry, "valueFrom.fieldRef.fieldPath") {
                match path.as_str() {
                    Some("metadata.name") => POD_NAME.to_owned(),
                    Some("metadata.namespace") => "default".to_owned(),
                    Some("status.podIP") => POD_IP.to_owned(),
                    other => panic!("{name}: field {other:?} is not known to this test"),
                }
            } else if let Some(secret) = at(entry, "valueFrom.secretKeyRef") {
                self.secret_value(secret)
            } else {
                panic!("{name}: neither a value, a field nor a secret: {entry:?}");
            };
            env.insert(name, value);
        }
        env
    }

    /// The value behind a `secretKeyRef`, which must name a Secret of the manifests and
    /// one of its keys.
    fn secret_value(&self, secret_ref: &Value) -> String {
        let name = secret_ref["name"].as_str().unwrap();
        let key = secret_ref["key"].as_str().unwrap();
        let secret = self
            .find("Secret", name)
            .unwrap_or_else(|| panic!("no Secret `{name}` in examples/kubernetes"));
        if let Some(v) = at(&secret.doc, "stringData").and_then(|d| d.get(key)) {
            return v.as_str().unwrap().to_owned();
        }
        // Base64 in `data`: the node only needs a cookie that is not empty.
        let v = at(&secret.doc, "data")
            .and_then(|d| d.get(key))
            .unwrap_or_else(|| panic!("{secret} has no key `{key}`"));
        v.as_str().unwrap().to_owned()
    }
}

/// The port named `name` of container `c`.
fn named_port<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["ports"]
        .as_sequence()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
}

/// Kubernetes' `$(VAR)` expansion, for variables defined earlier in `env`.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    env.iter().fold(value.to_owned(), |v, (name, val)| {
        v.replace(&format!("$({name})"), val)
    })
}

#[test]
fn every_file_is_there_and_names_no_namespace() {
    let manifests = Manifests::load();
    for o in &manifests.objects {
        assert!(
            at(&o.doc, "metadata.namespace").is_none(),
            "{o} names a namespace: the example is applied to any with `kubectl apply -n`"
        );
    }
}

#[test]
fn pods_carry_the_label_discovery_selects() {
    let manifests = Manifests::load();
    let labels = manifests.pod_labels();
    let cluster = manifests.env_value("FOUNDATION_CLUSTER");
    assert_eq!(
        labels.get(KUBERNETES_CLUSTER_LABEL).map(String::as_str),
        Some(cluster),
        "discovery lists the pods labelled `{KUBERNETES_CLUSTER_LABEL}={cluster}` \
         (FOUNDATION_CLUSTER), but the pod template's labels are {labels:?}"
    );
    // The workload's selector must pick its own pods (the API server refuses it
    // otherwise, but better said here).
    let w = manifests.workload();
    let selector = string_map(
        w.at("spec.selector.matchLabels"),
        &format!("{w}'s selector"),
    );
    for (k, v) in &selector {
        assert_eq!(
            labels.get(k),
            Some(v),
            "{w} selects {k}={v}: not a pod label"
        );
    }
}

#[test]
fn the_pod_environment_is_a_node_that_discovers_through_kubernetes() {
    let manifests = Manifests::load();
    let mut env = manifests.pod_env();
    // Set in every pod by the kubelet, enableServiceLinks or not.
    env.insert("KUBERNETES_SERVICE_HOST".into(), "10.96.0.1".into());
    let lookup = |k: &str| env.get(k).cloned();

    NodeConfig::from_env(lookup).unwrap_or_else(|e| {
        panic!("the pod's environment is not a valid node configuration: {e}\n{env:?}")
    });
    let (choice, why) = detect(lookup).unwrap();
    assert_eq!(choice, Choice::Kubernetes, "{why}");
    let node = NodeInfo::new(POD_NAME, &env["FOUNDATION_CLUSTER"], DEFAULT_PORT);
    let strategy = strategy_for(choice, &node).unwrap();
    assert_eq!(strategy.name(), "kubernetes");
}

#[test]
fn the_cluster_port_is_the_node_default() {
    let manifests = Manifests::load();
    let port = manifests.port("cluster");
    assert_eq!(
        port, DEFAULT_PORT,
        "the container's `cluster` port is {port}, the node's default is {DEFAULT_PORT}: \
         discovery dials every pod on one port"
    );
    let env = manifests.pod_env();
    if let Some(listen) = env.get("FOUNDATION_LISTEN") {
        let listen: SocketAddr = listen.parse().unwrap();
        assert_eq!(listen.port(), port, "FOUNDATION_LISTEN");
        assert!(
            listen.ip().is_unspecified(),
            "FOUNDATION_LISTEN must take connections from other pods: {listen}"
        );
    }
    // Without it a node listening on 0.0.0.0 tells its peers 127.0.0.1.
    let advertise = env
        .get("FOUNDATION_ADVERTISE")
        .expect("FOUNDATION_ADVERTISE must be set to the pod's IP and port");
    let advertise: Peer = advertise.parse().unwrap();
    assert_eq!(
        advertise,
        Peer {
            host: POD_IP.to_owned(),
            port
        },
        "FOUNDATION_ADVERTISE must be the pod's IP (status.podIP) and the cluster port"
    );
}

#[test]
fn the_service_is_headless_and_selects_the_pods() {
    let manifests = Manifests::load();
    let svc = manifests.one("Service");
    assert_eq!(
        svc.str_at("spec.clusterIP"),
        "None",
        "{svc} must be headless"
    );
    assert_eq!(
        svc.at("spec.publishNotReadyAddresses").as_bool(),
        Some(true),
        "{svc}: peers must reach a pod before it is ready"
    );
    let labels = manifests.pod_labels();
    let selector = string_map(svc.at("spec.selector"), &format!("{svc}'s selector"));
    assert!(!selector.is_empty(), "{svc} selects nothing");
    for (k, v) in &selector {
        assert_eq!(
            labels.get(k),
            Some(v),
            "{svc} selects {k}={v}: not a pod label"
        );
    }
    assert_eq!(
        selector.get(KUBERNETES_CLUSTER_LABEL),
        labels.get(KUBERNETES_CLUSTER_LABEL),
        "{svc} should select the cluster's pods, as discovery does"
    );
    let ports = svc.at("spec.ports").as_sequence().unwrap();
    for name in ["cluster", "http"] {
        let container_port = manifests.port(name);
        let p = ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{svc} has no port named `{name}`"));
        assert_eq!(
            u64::from(container_port),
            as_u64(&p["port"]),
            "{svc}: {name}"
        );
        let target = &p["targetPort"];
        assert!(
            target.is_null()
                || target.as_str() == Some(name)
                || target.as_u64() == Some(container_port.into()),
            "{svc}: port `{name}` targets {target:?}, not the container's `{name}`"
        );
    }
    let w = manifests.workload();
    if w.kind() == "StatefulSet" {
        assert_eq!(
            w.str_at("spec.serviceName"),
            svc.name(),
            "{w}'s serviceName"
        );
    }
}

#[test]
fn the_disruption_budget_covers_the_pods_one_at_a_time() {
    let manifests = Manifests::load();
    let pdb = manifests.one("PodDisruptionBudget");
    let labels = manifests.pod_labels();
    let selector = string_map(
        pdb.at("spec.selector.matchLabels"),
        &format!("{pdb}'s selector"),
    );
    assert!(!selector.is_empty(), "{pdb} selects nothing");
    for (k, v) in &selector {
        assert_eq!(
            labels.get(k),
            Some(v),
            "{pdb} selects {k}={v}: not a pod label"
        );
    }
    assert_eq!(
        pdb.at("spec.maxUnavailable").as_u64(),
        Some(1),
        "{pdb}: one leave at a time"
    );
}

#[test]
fn rbac_lets_the_pods_list_pods_and_no_more() {
    let manifests = Manifests::load();
    let w = manifests.workload();
    let account = w.str_at("spec.template.spec.serviceAccountName");
    let sa = manifests
        .find("ServiceAccount", account)
        .unwrap_or_else(|| panic!("{w} runs as ServiceAccount `{account}`, not in the files"));
    for token in [
        at(&sa.doc, "automountServiceAccountToken"),
        at(&w.doc, "spec.template.spec.automountServiceAccountToken"),
    ] {
        assert_ne!(
            token.and_then(Value::as_bool),
            Some(false),
            "the strategy authenticates with the mounted service account token"
        );
    }

    // A RoleBinding of the pods' account, to a Role of the files.
    let bindings: Vec<&Object> = manifests
        .objects
        .iter()
        .filter(|o| o.kind() == "RoleBinding")
        .filter(|b| {
            b.at("subjects").as_sequence().unwrap().iter().any(|s| {
                s["kind"].as_str() == Some("ServiceAccount")
                    && s["name"].as_str() == Some(account)
                    // Another namespace's account would not be the pods'.
                    && s["namespace"].is_null()
            })
        })
        .collect();
    assert!(
        !bindings.is_empty(),
        "no RoleBinding binds ServiceAccount `{account}` (of its own namespace)"
    );
    let mut lists_pods = false;
    for binding in bindings {
        assert_eq!(binding.str_at("roleRef.kind"), "Role", "{binding}");
        assert_eq!(
            binding.str_at("roleRef.apiGroup"),
            "rbac.authorization.k8s.io",
            "{binding}"
        );
        let role_name = binding.str_at("roleRef.name");
        let role = manifests
            .find("Role", role_name)
            .unwrap_or_else(|| panic!("{binding} binds Role `{role_name}`, not in the files"));
        for rule in role.at("rules").as_sequence().unwrap() {
            let groups = strings(rule.get("apiGroups"));
            let resources = strings(rule.get("resources"));
            let verbs = strings(rule.get("verbs"));
            for verb in &verbs {
                assert!(
                    STRATEGY_VERBS.contains(verb),
                    "{role} grants `{verb}`: the strategy only needs {STRATEGY_VERBS:?}"
                );
            }
            for group in &groups {
                for resource in &resources {
                    assert!(
                        STRATEGY_RESOURCES.contains(&(group, resource)),
                        "{role} grants {resource:?} in API group {group:?}: the strategy \
                         only reads {STRATEGY_RESOURCES:?}"
                    );
                }
            }
            lists_pods |=
                groups.contains(&"") && resources.contains(&"pods") && verbs.contains(&"list");
        }
    }
    assert!(
        lists_pods,
        "no Role bound to `{account}` grants `list` on `pods`: the strategy's one request"
    );
}

#[test]
fn probes_ask_the_http_port_for_health() {
    let manifests = Manifests::load();
    let http = manifests.port("http");
    let container = manifests.container();
    for (probe, path) in [("livenessProbe", LIVE_PATH), ("readinessProbe", READY_PATH)] {
        let get = at(container, &format!("{probe}.httpGet"))
            .unwrap_or_else(|| panic!("the node's container has no {probe}.httpGet"));
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        let port = &get["port"];
        assert!(
            port.as_str() == Some("http") || port.as_u64() == Some(http.into()),
            "{probe} asks port {port:?}, not the `http` port"
        );
    }
    // The runtime's default, 127.0.0.1, is out of the kubelet's reach.
    let listen: SocketAddr = manifests
        .env_value("FOUNDATION_HTTP_LISTEN")
        .parse()
        .unwrap();
    assert!(
        listen.ip().is_unspecified(),
        "FOUNDATION_HTTP_LISTEN: {listen}"
    );
    assert_eq!(
        listen.port(),
        http,
        "FOUNDATION_HTTP_LISTEN and the `http` port"
    );
}

#[test]
fn the_cookie_comes_from_a_secret_of_the_files() {
    let manifests = Manifests::load();
    let entry = manifests
        .env_entry("FOUNDATION_COOKIE")
        .expect("the node's container does not set FOUNDATION_COOKIE (required)");
    assert!(
        entry["value"].is_null(),
        "FOUNDATION_COOKIE is written in the manifest: take it from a Secret"
    );
    let secret_ref = at(entry, "valueFrom.secretKeyRef")
        .expect("FOUNDATION_COOKIE must come from a secretKeyRef");
    assert_ne!(
        secret_ref["optional"].as_bool(),
        Some(true),
        "a node without a cookie cannot start: the Secret is not optional"
    );
    let cookie = manifests.secret_value(secret_ref);
    assert!(!cookie.trim().is_empty(), "the cookie is empty");
}

#[test]
fn only_variables_foundation_reads_are_set() {
    let manifests = Manifests::load();
    let env = manifests.pod_env();
    let unknown: Vec<String> = unknown_variables(env.keys().map(String::as_str))
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !RUNTIME_VARIABLES.contains(&name.as_str()))
        .collect();
    assert!(unknown.is_empty(), "Foundation reads no {unknown:?}");
    // Service links would add FOUNDATION_APP_SERVICE_HOST and the like for a service
    // named foundation-app, each one warned about as an unknown setting.
    let w = manifests.workload();
    assert_eq!(
        w.at("spec.template.spec.enableServiceLinks").as_bool(),
        Some(false),
        "{w}: service links would set FOUNDATION_* variables"
    );
}

#[test]
fn the_grace_period_covers_a_graceful_leave() {
    let manifests = Manifests::load();
    let w = manifests.workload();
    // Kubernetes' default when not given.
    let grace = at(&w.doc, "spec.template.spec.terminationGracePeriodSeconds").map_or(30, as_u64);
    assert!(
        Duration::from_secs(grace) > SHUTDOWN_TIMEOUT,
        "{w}: {grace} s from SIGTERM to SIGKILL leave no room for a graceful leave \
         (up to {SHUTDOWN_TIMEOUT:?}) and the application's own stop"
    );
}

#[test]
fn the_image_exposes_both_ports_and_runs_as_the_pods_user() {
    let manifests = Manifests::load();
    let path = dir().join("Dockerfile");
    let dockerfile = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("examples/kubernetes/Dockerfile: {e}"));
    let instructions = |word: &str| -> Vec<String> {
        dockerfile
            .lines()
            .filter_map(|l| l.trim().strip_prefix(word))
            .map(|rest| rest.trim().to_owned())
            .collect()
    };
    let exposed: Vec<String> = instructions("EXPOSE ")
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    for name in ["cluster", "http"] {
        let port = manifests.port(name).to_string();
        assert!(
            exposed.contains(&port),
            "the Dockerfile does not EXPOSE {port} ({name})"
        );
    }
    let users = instructions("USER ");
    let user = users
        .last()
        .expect("the Dockerfile sets no USER: it would run as root");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "the image runs as root");
    let w = manifests.workload();
    if let Some(run_as) = at(&w.doc, "spec.template.spec.securityContext.runAsUser") {
        assert_eq!(
            uid,
            as_u64(run_as).to_string(),
            "{w}'s runAsUser and the Dockerfile's USER"
        );
    }
}
