//! [`NatsCluster`]: three nats-server nodes on loopback joined by routes, each a
//! [`NatsServer`] guard that a test can stop like a crashed node.
//!
//! Each node gets a configuration file with `cluster { name, listen, routes }` naming the
//! other two, written to a directory of its own under the system's temporary directory and
//! removed on drop. [`NatsCluster::start`] returns once every node routes messages to every
//! other (interest travels between nodes asynchronously, so it checks with real traffic).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;

use crate::nats::{free_port, NatsServer};

/// How long the routes may take to carry traffic between every pair of nodes.
const FORMED_BOUND: Duration = Duration::from_secs(20);

/// The cluster's name in every node's `cluster` block.
const CLUSTER_NAME: &str = "openim-test";

/// Three routed nats-server nodes.
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, in the order their configurations were written.
    pub nodes: Vec<NatsServer>,
    /// Each node's monitoring port (`/connz` tells which node a client is on).
    monitor_ports: Vec<u16>,
    directory: PathBuf,
}

impl NatsCluster {
    /// Starts three nodes routed to each other and waits until they carry messages between
    /// every pair.
    pub async fn start() -> Self {
        const NODES: usize = 3;
        let directory = std::env::temp_dir().join(format!(
            "openim-gateway-cluster-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&directory)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", directory.display()));
        let client_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
        let monitor_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
        let mut nodes = Vec::with_capacity(NODES);
        for node in 0..NODES {
            let routes: Vec<String> = route_ports
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != node)
                .map(|(_, port)| format!("\"nats-route://127.0.0.1:{port}\""))
                .collect();
            let config = format!(
                "server_name: node-{node}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\ncluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
                client = client_ports[node],
                monitor = monitor_ports[node],
                route = route_ports[node],
                routes = routes.join(", "),
            );
            let path = directory.join(format!("node-{node}.conf"));
            std::fs::write(&path, config)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
            nodes.push(NatsServer::start_cluster_node(client_ports[node], path).await);
        }
        let cluster = Self {
            nodes,
            monitor_ports,
            directory,
        };
        cluster.wait_until_formed().await;
        cluster
    }

    /// `nats://127.0.0.1:PORT` of node `index`.
    pub fn url(&self, index: usize) -> String {
        self.nodes[index].url()
    }

    /// Every node's URL, node `first` first, comma separated: a client's `NATS_URL`.
    pub fn urls_from(&self, first: usize) -> String {
        let mut urls = vec![self.url(first)];
        urls.extend(
            (0..self.nodes.len())
                .filter(|index| *index != first)
                .map(|index| self.url(index)),
        );
        urls.join(",")
    }

    /// The running node that has a client connection named `name`, from each node's `/connz`:
    /// a client given several URLs picks one at random.
    pub async fn node_of_connection(&mut self, name: &str) -> Option<usize> {
        // The connection's name as a JSON string; no other field of /connz holds it.
        let wanted = format!("\"{name}\"");
        for index in 0..self.nodes.len() {
            if !self.nodes[index].is_running() {
                continue;
            }
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.monitor_ports[index]));
            let Ok(response) = crate::http::send(address, &crate::HttpRequest::get("/connz")).await
            else {
                continue;
            };
            if response.text().contains(&wanted) {
                return Some(index);
            }
        }
        None
    }

    /// Waits until a request sent on each node reaches a responder on every other node.
    async fn wait_until_formed(&self) {
        let mut clients = Vec::new();
        for index in 0..self.nodes.len() {
            let client = async_nats::connect(self.url(index))
                .await
                .unwrap_or_else(|error| panic!("cannot connect to node {index}: {error}"));
            let mut subscriber = client
                .subscribe(format!("_CLUSTER.ping.{index}"))
                .await
                .unwrap_or_else(|error| panic!("cannot subscribe on node {index}: {error}"));
            let responder = client.clone();
            tokio::spawn(async move {
                while let Some(message) = subscriber.next().await {
                    if let Some(reply) = message.reply {
                        let _ = responder.publish(reply, Bytes::new()).await;
                    }
                }
            });
            clients.push(client);
        }
        let deadline = tokio::time::Instant::now() + FORMED_BOUND;
        for (from, client) in clients.iter().enumerate() {
            for to in (0..clients.len()).filter(|to| *to != from) {
                loop {
                    let answered = tokio::time::timeout(
                        Duration::from_millis(500),
                        client.request(format!("_CLUSTER.ping.{to}"), Bytes::new()),
                    )
                    .await;
                    if matches!(answered, Ok(Ok(_))) {
                        break;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "node {from} cannot reach node {to} after {FORMED_BOUND:?}; node {from} said:\n{}",
                        self.nodes[from].stderr_tail(30)
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
