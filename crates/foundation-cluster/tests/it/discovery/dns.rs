//! The DNS strategy against a tiny name server on loopback whose records the test changes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_cluster::discovery::{DiscoveryError, Dns, Strategy};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{PATIENCE, logs, until_seen};

const NAME: &str = "peers.foundation.test";

/// What the server answers for [`NAME`].
#[derive(Debug, Clone)]
enum Zone {
    /// These addresses (A queries get the IPv4 ones, AAAA the IPv6 ones).
    Records(Vec<IpAddr>),
    /// NXDOMAIN.
    NoSuchName,
    /// Nothing at all: queries are dropped.
    Silent,
}

/// A name server on 127.0.0.1 that answers for [`NAME`] from a [`Zone`] the test changes.
/// Every query it reads is also sent on `queries`, with what it did about it.
struct Server {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: mpsc::UnboundedReceiver<&'static str>,
}

impl Server {
    async fn start(zone: Zone) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(zone));
        let (tx, queries) = mpsc::unbounded_channel();
        let shared = zone.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let zone = shared.lock().unwrap().clone();
                let (answer, what) = respond(&query, &zone);
                if tx.send(what).is_err() {
                    return;
                }
                if let Some(answer) = answer {
                    socket
                        .send_to(&answer.to_vec().unwrap(), from)
                        .await
                        .unwrap();
                }
            }
        });
        Self {
            addr,
            zone,
            queries,
        }
    }

    fn set(&self, zone: Zone) {
        *self.zone.lock().unwrap() = zone;
    }

    /// Waits until the server has done `what` with a query.
    async fn until_it_has(&mut self, what: &str) {
        tokio::time::timeout(PATIENCE, async {
            while self.queries.recv().await != Some(what) {}
        })
        .await
        .unwrap_or_else(|_| panic!("the server did not get to `{what}` within {PATIENCE:?}"));
    }
}

fn respond(query: &Message, zone: &Zone) -> (Option<Message>, &'static str) {
    let mut answer = Message::new();
    answer
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    for q in query.queries() {
        answer.add_query(q.clone());
        let ours = q.name().to_ascii().trim_end_matches('.') == NAME;
        match zone {
            Zone::Silent => return (None, "dropped"),
            Zone::NoSuchName => {
                answer.set_response_code(ResponseCode::NXDomain);
                return (Some(answer), "nxdomain");
            }
            Zone::Records(_) if !ours => {
                answer.set_response_code(ResponseCode::NXDomain);
            }
            Zone::Records(ips) => {
                for ip in ips {
                    let rdata = match (ip, q.query_type()) {
                        (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                        _ => continue,
                    };
                    answer.add_answer(Record::from_rdata(q.name().clone(), 1, rdata));
                }
            }
        }
    }
    (Some(answer), "answered")
}

fn ips(list: &[&str]) -> Zone {
    Zone::Records(list.iter().map(|s| s.parse().unwrap()).collect())
}

#[tokio::test]
async fn records_added_and_removed_show_up_in_successive_sightings() {
    logs();
    let mut server = Server::start(ips(&["10.1.0.1", "10.1.0.2"])).await;
    let dns = Dns::new(NAME, 4369)
        .nameserver(server.addr)
        .every(Duration::from_millis(50))
        .timeout(Duration::from_millis(500));
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(Box::new(dns).run(tx));

    until_seen(&mut rx, "dns", &["10.1.0.1:4369", "10.1.0.2:4369"]).await;
    server.set(ips(&["10.1.0.2", "10.1.0.3", "fd00::7"]));
    until_seen(
        &mut rx,
        "dns",
        &["10.1.0.2:4369", "10.1.0.3:4369", "[fd00::7]:4369"],
    )
    .await;
    server.set(ips(&["10.1.0.3"]));
    until_seen(&mut rx, "dns", &["10.1.0.3:4369"]).await;
    assert!(server.queries.try_recv().is_ok(), "the server was asked");

    drop(rx);
    assert_eq!(task.await.unwrap(), Ok(()));
}

#[tokio::test]
async fn nxdomain_and_a_silent_server_are_retried_not_fatal() {
    logs();
    let mut server = Server::start(ips(&["10.2.0.1"])).await;
    let dns = Dns::new(NAME, 4369)
        .nameserver(server.addr)
        .every(Duration::from_millis(50))
        .timeout(Duration::from_millis(200));
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(Box::new(dns).run(tx));
    until_seen(&mut rx, "dns", &["10.2.0.1:4369"]).await;

    // A name that no longer exists: no peers, and polling goes on.
    server.set(Zone::NoSuchName);
    until_seen(&mut rx, "dns", &[]).await;

    // A server that says nothing: the previous sighting stands, and polling goes on.
    server.set(Zone::Silent);
    server.until_it_has("dropped").await;
    server.until_it_has("dropped").await;
    server.set(ips(&["10.2.0.9"]));
    let before = until_seen(&mut rx, "dns", &["10.2.0.9:4369"]).await;
    assert!(
        before.is_empty(),
        "a silent server changed the sighting: {before:?}"
    );
    assert!(!task.is_finished());

    drop(rx);
    assert_eq!(task.await.unwrap(), Ok(()));
}

#[tokio::test]
async fn a_name_that_cannot_be_resolved_is_a_configuration_error() {
    let (tx, _rx) = mpsc::channel(1);
    let err = Box::new(Dns::new("a..b", 4369)).run(tx).await.unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::BadConfig {
                strategy: "dns",
                ..
            }
        ),
        "{err}"
    );
}
