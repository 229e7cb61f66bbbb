//! Fault injection for the `fault_*` tests: crash or stop a shared service and start it again
//! even when the test fails, cut the operator off from the apiserver, and wait for recovery.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, copy_bidirectional},
    net::{TcpListener, TcpStream},
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
/// also hold back every answer for a while, as a slow network would.
pub struct Partition {
    pub port: u16,
    target: u16,
    delay: Duration,
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
            accept: Mutex::new(None),
        };
        partition.serve(listener);
        partition
    }

    fn serve(&self, listener: TcpListener) {
        let (target, delay) = (self.target, self.delay);
        let task = tokio::spawn(async move {
            // Dropped with this task, which aborts every connection it carries.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    if delay.is_zero() {
                        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                    let (mut client_read, mut client_write) = inbound.into_split();
                    let (mut server_read, mut server_write) = outbound.into_split();
                    let upstream = tokio::io::copy(&mut client_read, &mut server_write);
                    let downstream = async {
                        let mut buffer = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
                            tokio::time::sleep(delay).await;
                            if client_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! {
                        _ = upstream => {}
                        () = downstream => {}
                    }
                });
            }
        });
        *self.accept.lock().unwrap() = Some(task);
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

impl Drop for Partition {
    fn drop(&mut self) {
        self.cut();
    }
}
