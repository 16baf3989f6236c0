//! Loopback addresses of one test's own, so that the servers a test starts (brokers, Redis,
//! service processes) listen on ports the test holds.
//!
//! Binding port 0, releasing it and letting a server bind it later is a race: the parallel run
//! opens hundreds of client sockets, and one may take the port in between. Instead a test
//! reserves a whole address of 127.0.0.0/8 (Linux routes all of it to `lo`): it binds
//! [`RESERVATION_PORT`] on a random `127.x.y.z` and keeps that socket until it is dropped.
//! Another test that draws the same address fails to bind it and draws again, and nothing
//! else binds these addresses (the stack listens on 127.0.0.1, and client sockets take their
//! local address from the route, 127.0.0.1), so every port on the address is the test's: a
//! server killed and started again finds its port free.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// The port whose listener marks an address as taken; outside Linux's ephemeral range
/// (32768–60999), so no server binding port 0 on the address takes it.
pub const RESERVATION_PORT: u16 = 65_534;

/// A loopback address reserved for one test until dropped.
#[derive(Debug)]
pub struct Host {
    ip: Ipv4Addr,
    _reservation: TcpListener,
}

impl Host {
    /// Draws addresses in 127.16.0.0–127.254.255.254 until one is free.
    pub fn reserve() -> Self {
        for _ in 0..1_000 {
            let [a, b, c] = rand::random::<[u8; 3]>();
            let ip = Ipv4Addr::new(127, a.clamp(16, 254), b, c.clamp(1, 254));
            if let Ok(reservation) = TcpListener::bind((ip, RESERVATION_PORT)) {
                return Self {
                    ip,
                    _reservation: reservation,
                };
            }
        }
        panic!("no loopback address could be reserved in 1,000 draws");
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `port` on this address.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }
}

/// Waits until something accepts connections on `addr` (60 s at most: a JVM starting while
/// the parallel run loads both cores can take tens of seconds).
pub async fn wait_for_listener(addr: SocketAddr) {
    assert!(
        listening_within(addr, std::time::Duration::from_secs(60)).await,
        "nothing listened on {addr} within 60 s"
    );
}

/// Whether something accepts connections on `addr` within `limit`.
pub async fn listening_within(addr: SocketAddr, limit: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
