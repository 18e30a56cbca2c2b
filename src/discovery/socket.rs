//! The beacon's UDP socket: joined to the multicast group (sharing the port with ARK's
//! Python listener on the same machine), or plain unicast for networks without
//! multicast and for tests; and this machine's LAN address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use rustix::net::{AddressFamily, SocketType, ipproto, sockopt};

use crate::config::DiscoveryConfig;

/// Opens the beacon socket for `config`, bound to its port on every interface, or with
/// unicast targets on `listen`, the one address the server listens on, if it listens on
/// one: a beacon's source address is where its hearers reach the node, so it must not be
/// whatever address the kernel picks (127.0.0.1 for every loopback target).
///
/// `SO_REUSEADDR` is set before binding, as ARK's Python service does, so both can
/// listen on port 8103 of one machine: multicast datagrams reach every socket bound to
/// the port. With unicast targets the socket joins no group.
pub fn open(config: &DiscoveryConfig, listen: IpAddr) -> io::Result<smol::net::UdpSocket> {
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, Some(ipproto::UDP))?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    let address = match listen {
        IpAddr::V4(address) if !config.unicast.is_empty() => address,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    rustix::net::bind(&fd, &SocketAddrV4::new(address, config.port))?;
    if config.unicast.is_empty() {
        sockopt::set_ip_add_membership(&fd, &config.group, &config.interface)?;
        if !config.interface.is_unspecified() {
            sockopt::set_ip_multicast_if(&fd, &config.interface)?;
        }
        // Several nodes on one machine (and tests) hear each other through the loopback
        // of multicast; a node ignores its own beacons by id.
        sockopt::set_ip_multicast_loop(&fd, true)?;
        // Beacons are for the local network only; routers do not forward them.
        sockopt::set_ip_multicast_ttl(&fd, 1)?;
    }
    let socket = UdpSocket::from(fd);
    smol::net::UdpSocket::try_from(socket)
}

/// Where beacons go: the unicast targets, or the group on the beacon port.
pub fn destinations(config: &DiscoveryConfig) -> Vec<SocketAddr> {
    if config.unicast.is_empty() {
        vec![SocketAddr::V4(SocketAddrV4::new(config.group, config.port))]
    } else {
        config.unicast.clone()
    }
}

/// This machine's IPv4 address on the network that reaches `toward`: the configured
/// beacon interface when there is one, else what the kernel would send from. Nothing
/// is sent: connecting a UDP socket only picks a route.
pub fn local_ipv4(config: &DiscoveryConfig, toward: SocketAddr) -> Option<Ipv4Addr> {
    if !config.interface.is_unspecified() {
        return Some(config.interface);
    }
    if toward.ip().is_loopback() {
        return Some(Ipv4Addr::LOCALHOST);
    }
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    probe.connect(toward).ok()?;
    match probe.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}
