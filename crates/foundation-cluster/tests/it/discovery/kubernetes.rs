//! The Kubernetes strategy with the real kube client against a tiny API server on
//! loopback that answers list requests the way the real one does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_cluster::discovery::{DiscoveryError, Kubernetes, Strategy};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{PATIENCE, logs, until_seen};

const NAMESPACE: &str = "shop";

/// What the API server holds, and how it answers.
#[derive(Debug, Default)]
struct State {
    pods: Vec<Value>,
    slices: Vec<Value>,
    /// Pods answered to a `get` by name (`pods/<name>`); others are 404.
    named: Vec<Value>,
    /// Answer every request with this status code (and a Status object) instead.
    failing: Option<u16>,
}

/// An HTTP/1.1 server on 127.0.0.1 that answers pod and EndpointSlice lists of
/// [`NAMESPACE`] from a [`State`] the test changes, and sends every request target (path
/// and query, decoded) with the status code it answered on `requests`.
struct ApiServer {
    url: String,
    state: Arc<Mutex<State>>,
    requests: mpsc::UnboundedReceiver<(String, u16)>,
}

impl ApiServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, requests) = mpsc::unbounded_channel();
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone(), tx.clone()));
            }
        });
        Self {
            url,
            state,
            requests,
        }
    }

    fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.default_namespace = NAMESPACE.to_owned();
        kube::Client::try_from(config).unwrap()
    }

    fn change(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap());
    }

    /// Waits for a request whose target starts with `prefix` answered with `code`, and
    /// returns the target.
    async fn until_answered(&mut self, prefix: &str, code: u16) -> String {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let (target, answered) = self.requests.recv().await.unwrap();
                if target.starts_with(prefix) && answered == code {
                    return target;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no request for {prefix} answered {code} within {PATIENCE:?}"))
    }
}

/// Serves one connection: requests without bodies, kept alive as the client wishes.
async fn serve(
    mut stream: TcpStream,
    state: Arc<Mutex<State>>,
    requests: mpsc::UnboundedSender<(String, u16)>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let target = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let target = percent_decode(&target);
        let (code, body) = answer(&target, &state.lock().unwrap());
        let _ = requests.send((target, code));
        let body = body.to_string();
        let response = format!(
            "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            if code == 200 { "OK" } else { "Error" },
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn answer(target: &str, state: &State) -> (u16, Value) {
    if let Some(code) = state.failing {
        return (code, status(code, "the test says no"));
    }
    let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods?");
    let slices = format!("/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices?");
    let one = format!("/api/v1/namespaces/{NAMESPACE}/pods/");
    if let Some(name) = target.strip_prefix(&one) {
        let name = name.split('?').next().unwrap_or_default();
        return match state.named.iter().find(|p| p["metadata"]["name"] == name) {
            Some(p) => {
                let mut p = p.clone();
                p["kind"] = json!("Pod");
                p["apiVersion"] = json!("v1");
                (200, p)
            }
            None => (404, status(404, "pods not found")),
        };
    }
    if target.starts_with(&pods) {
        (200, list("PodList", "v1", &state.pods))
    } else if target.starts_with(&slices) {
        (
            200,
            list("EndpointSliceList", "discovery.k8s.io/v1", &state.slices),
        )
    } else {
        (404, status(404, "the page could not be found"))
    }
}

fn list(kind: &str, api_version: &str, items: &[Value]) -> Value {
    json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": "1"},
        "items": items,
    })
}

fn status(code: u16, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": if code == 403 { "Forbidden" } else { "InternalError" },
        "code": code,
    })
}

/// A pod as list items come from the API server (without kind and apiVersion).
fn pod(name: &str, phase: &str, ip: Option<&str>) -> Value {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "orders"}},
        "spec": {"containers": [{"name": "node", "image": "orders:1"}]},
        "status": {"phase": phase},
    });
    if let Some(ip) = ip {
        pod["status"]["podIP"] = json!(ip);
    }
    pod
}

/// An EndpointSlice of service `orders` with endpoints `(address, ready)`; `None` leaves
/// the ready condition out.
fn slice(name: &str, endpoints: &[(&str, Option<bool>)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(address, ready)| {
            let mut endpoint = json!({"addresses": [address]});
            if let Some(ready) = ready {
                endpoint["conditions"] = json!({"ready": ready});
            }
            endpoint
        })
        .collect();
    json!({
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": "orders"},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "cluster", "port": 4369, "protocol": "TCP"}],
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn running_pods_matching_the_selector_are_reported_as_they_change() {
    logs();
    let mut server = ApiServer::start().await;
    server.change(|s| {
        s.pods = vec![
            pod("orders-0", "Running", Some("10.4.0.10")),
            pod("orders-1", "Pending", None),
            pod("orders-2", "Running", None),
            pod("orders-3", "Succeeded", Some("10.4.0.13")),
        ];
    });
    let k8s = Kubernetes::pods("app=orders,tier in (a, b)", 4369)
        .client(server.client())
        .every(Duration::from_millis(50));
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(Box::new(k8s).run(tx));

    until_seen(&mut rx, "kubernetes", &["10.4.0.10:4369"]).await;
    let asked = server
        .until_answered(&format!("/api/v1/namespaces/{NAMESPACE}/pods?"), 200)
        .await;
    assert!(
        asked.contains("labelSelector=app=orders,tier in (a, b)"),
        "{asked}"
    );

    // orders-1 starts, orders-0 goes away.
    server.change(|s| {
        s.pods = vec![
            pod("orders-1", "Running", Some("10.4.0.11")),
            pod("orders-2", "Running", Some("fd00::12")),
        ];
    });
    until_seen(
        &mut rx,
        "kubernetes",
        &["10.4.0.11:4369", "[fd00::12]:4369"],
    )
    .await;

    drop(rx);
    assert_eq!(task.await.unwrap(), Ok(()));
}

/// `pods_like`: the selector is this pod's own label, read with a `get` of the pod; a pod
/// that cannot be read, or has no such label, falls back to the given selector.
#[tokio::test]
async fn pods_labelled_like_this_pod_are_the_peers_else_the_fallback_selector() {
    logs();
    for (me, label, expected) in [
        (
            "node-0",
            Some("blue"),
            "labelSelector=foundation/cluster=blue",
        ),
        ("node-0", None, "labelSelector=foundation/cluster=fallback"),
        (
            "unknown-pod",
            Some("blue"),
            "labelSelector=foundation/cluster=fallback",
        ),
    ] {
        let mut server = ApiServer::start().await;
        server.change(|s| {
            let mut own = pod("node-0", "Running", Some("10.4.0.20"));
            if let Some(label) = label {
                own["metadata"]["labels"]["foundation/cluster"] = json!(label);
            }
            s.named = vec![own.clone()];
            s.pods = vec![own];
        });
        let k8s = Kubernetes::pods_like(
            me,
            "foundation/cluster",
            "foundation/cluster=fallback",
            4369,
        )
        .client(server.client())
        .every(Duration::from_millis(50));
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(Box::new(k8s).run(tx));
        until_seen(&mut rx, "kubernetes", &["10.4.0.20:4369"]).await;
        let asked = server
            .until_answered(&format!("/api/v1/namespaces/{NAMESPACE}/pods?"), 200)
            .await;
        assert!(asked.contains(expected), "{me} {label:?}: {asked}");
        drop(rx);
        assert_eq!(task.await.unwrap(), Ok(()));
    }
}

#[tokio::test]
async fn ready_endpoints_of_a_service_are_reported() {
    logs();
    let mut server = ApiServer::start().await;
    server.change(|s| {
        s.slices = vec![
            slice(
                "orders-abc",
                &[("10.5.0.1", Some(true)), ("10.5.0.2", Some(false))],
            ),
            slice("orders-def", &[("10.5.0.3", None)]),
        ];
    });
    let k8s = Kubernetes::service("orders", 4369)
        .client(server.client())
        .every(Duration::from_millis(50));
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(Box::new(k8s).run(tx));

    until_seen(&mut rx, "kubernetes", &["10.5.0.1:4369", "10.5.0.3:4369"]).await;
    let asked = server
        .until_answered("/apis/discovery.k8s.io/v1/", 200)
        .await;
    assert!(
        asked.contains("labelSelector=kubernetes.io/service-name=orders"),
        "{asked}"
    );

    server.change(|s| {
        s.slices = vec![slice("orders-abc", &[("10.5.0.2", Some(true))])];
    });
    until_seen(&mut rx, "kubernetes", &["10.5.0.2:4369"]).await;

    drop(rx);
    assert_eq!(task.await.unwrap(), Ok(()));
}

#[tokio::test]
async fn server_errors_and_refusals_are_retried_not_fatal() {
    logs();
    let mut server = ApiServer::start().await;
    server.change(|s| s.pods = vec![pod("orders-0", "Running", Some("10.6.0.1"))]);
    let k8s = Kubernetes::pods("app=orders", 4369)
        .namespace(NAMESPACE)
        .client(server.client())
        .every(Duration::from_millis(50));
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(Box::new(k8s).run(tx));
    until_seen(&mut rx, "kubernetes", &["10.6.0.1:4369"]).await;

    for code in [500, 403] {
        server.change(|s| s.failing = Some(code));
        // Two failed polls: the strategy outlived the first.
        for _ in 0..2 {
            server.until_answered("/api/v1/", code).await;
        }
        assert!(!task.is_finished(), "a {code} ended the strategy");
    }
    server.change(|s| {
        s.failing = None;
        s.pods = vec![pod("orders-9", "Running", Some("10.6.0.9"))];
    });
    let before = until_seen(&mut rx, "kubernetes", &["10.6.0.9:4369"]).await;
    assert!(
        before.is_empty(),
        "a failed poll changed the sighting: {before:?}"
    );

    drop(rx);
    assert_eq!(task.await.unwrap(), Ok(()));
}

#[tokio::test]
async fn an_empty_selector_is_a_configuration_error() {
    let (tx, _rx) = mpsc::channel(1);
    let err = Box::new(Kubernetes::pods("", 4369))
        .run(tx)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::BadConfig {
                strategy: "kubernetes",
                ..
            }
        ),
        "{err}"
    );
}
