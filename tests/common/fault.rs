//! Fault injection for the `fault_*` tests: crash or stop a shared service and start it again
//! even when the test fails, cut the operator off from the apiserver, and wait for recovery.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use kube::config::Kubeconfig;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use super::TestEnv;

/// A service taken down by the test (`testenv.sh kill|stop SERVICE`). It is started again by
/// [`Outage::end`], or on drop when an assertion failed first, so later test binaries find the
/// environment as it was.
pub struct Outage {
    service: &'static str,
    over: bool,
}

impl Outage {
    /// Crashes `service`: SIGKILL (PostgreSQL: immediate shutdown).
    pub fn kill(service: &'static str) -> Self {
        TestEnv::get().testenv(&["kill", service]);
        Self {
            service,
            over: false,
        }
    }

    /// Stops `service` the orderly way.
    pub fn stop(service: &'static str) -> Self {
        TestEnv::get().testenv(&["stop", service]);
        Self {
            service,
            over: false,
        }
    }

    /// Starts the service again; returns once it answers.
    pub fn end(mut self) {
        self.over = true;
        TestEnv::get().testenv(&["start", self.service]);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.over {
            TestEnv::get().testenv(&["start", self.service]);
        }
    }
}

/// A loopback TCP proxy that can be cut: while cut, its port refuses connections and every
/// connection through it is dropped, as in a network partition; the other side stays up. It can
/// also hold back every answer for a while, as a slow network would, or hold all traffic: while
/// held, connections stay open (and new ones are accepted) but no byte passes either way, as
/// on a network that silently drops packets.
pub struct Partition {
    pub port: u16,
    target: u16,
    delay: Duration,
    held: watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Partition {
    /// Listens on 127.0.0.1 (a free port) and forwards every connection to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Self {
        Self::slow(target, Duration::ZERO).await
    }

    /// As [`Partition::start`], delaying everything the target sends by `delay`.
    pub async fn slow(target: u16, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let partition = Self {
            port,
            target,
            delay,
            held: watch::channel(false).0,
            accept: Mutex::new(None),
        };
        partition.serve(listener);
        partition
    }

    fn serve(&self, listener: TcpListener) {
        let (target, delay, held) = (self.target, self.delay, self.held.subscribe());
        let task = tokio::spawn(async move {
            // Dropped with this task, which aborts every connection it carries.
            let mut connections = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let held = held.clone();
                connections.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (client_read, client_write) = inbound.into_split();
                    let (server_read, server_write) = outbound.into_split();
                    // As `copy_bidirectional`: an end of stream one way is passed on, and the
                    // connection lasts until both ways have ended.
                    tokio::join!(
                        relay(client_read, server_write, Duration::ZERO, held.clone()),
                        relay(server_read, client_write, delay, held),
                    );
                });
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// Lets no byte through, on open connections or new ones, until [`Partition::release`];
    /// unlike [`Partition::cut`], nothing is closed or refused, so the other side sees no error,
    /// only silence.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Lets the held traffic through again.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Accepts connections again, on the same port.
    pub async fn heal(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding 127.0.0.1:{}: {e}; retrying", self.port);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot listen on 127.0.0.1:{} again: {e}", self.port),
            }
        };
        self.serve(listener);
    }
}

/// Copies `from` to `to` until `from` ends or either fails: each chunk `delay` late, and none
/// while `held` says so. Then ends `to` the way `from` ended.
async fn relay(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    mut held: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if held.wait_for(|held| !held).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A [`Partition`] in front of the test apiserver, and a kubeconfig (written to `path`) that
/// reaches the apiserver through it, for an operator the test can cut off or hold.
pub async fn apiserver_partition(path: &std::path::Path) -> Partition {
    let mut kubeconfig =
        Kubeconfig::read_from(TestEnv::get().kubeconfig()).expect("read the test kubeconfig");
    let cluster = kubeconfig
        .clusters
        .first_mut()
        .and_then(|named| named.cluster.as_mut())
        .expect("the test kubeconfig names a cluster");
    let server = cluster.server.as_deref().expect("the cluster has a server");
    let mut url = url::Url::parse(server).expect("the server is a URL");
    let proxy = Partition::start(url.port().expect("the server URL has a port")).await;
    url.set_port(Some(proxy.port)).unwrap();
    cluster.server = Some(url.as_str().trim_end_matches('/').to_owned());
    let yaml = serde_saphyr::to_string(&kubeconfig).expect("a kubeconfig serializes");
    std::fs::write(path, yaml).expect("write the kubeconfig");
    proxy
}
