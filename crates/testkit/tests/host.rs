//! Reserved loopback addresses: one test's address is never another's, and its ports stay
//! free for it while client sockets come and go.

use std::net::{Ipv4Addr, TcpListener};

use mentorstream_testkit::Host;
use mentorstream_testkit::host::RESERVATION_PORT;

#[test]
fn a_reserved_address_is_not_handed_out_twice() {
    let first = Host::reserve();
    assert!(TcpListener::bind((first.ip(), RESERVATION_PORT)).is_err());
    let second = Host::reserve();
    assert_ne!(first.ip(), second.ip());
    assert!(first.ip().is_loopback() && first.ip() != Ipv4Addr::LOCALHOST);
}

#[test]
fn a_port_of_a_reserved_address_stays_free_while_clients_connect() {
    let host = Host::reserve();
    let server = TcpListener::bind(host.addr(0)).expect("bind on the reserved address");
    let port = server.local_addr().expect("address").port();
    drop(server);
    // Client sockets take their local address from the route (127.0.0.1), not this one.
    let clients: Vec<_> = (0..50)
        .map(|_| std::net::TcpStream::connect(host.addr(RESERVATION_PORT)).expect("connect"))
        .collect();
    assert!(clients.iter().all(|client| {
        client.local_addr().expect("address").ip() == std::net::IpAddr::from(Ipv4Addr::LOCALHOST)
    }));
    TcpListener::bind(host.addr(port)).expect("the port is still free");
}
