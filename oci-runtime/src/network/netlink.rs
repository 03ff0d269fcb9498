//! A small synchronous rtnetlink client: the link, address and route requests the network
//! set-up makes, built with `netlink-packet-route` (netavark's choice) and sent over a
//! blocking `netlink-sys` socket. Synchronous because the monitor, which attaches a
//! container at each start, is single-threaded and has no async runtime.
//!
//! A socket belongs to the network namespace it was created in, so [`Netlink::in_namespace`]
//! creates one on a short-lived thread that has joined the target namespace: the calling
//! thread never changes namespace, and a multi-threaded caller is as safe as the monitor.

use super::NetError;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// An rtnetlink socket in one network namespace.
pub(crate) struct Netlink {
    sock: Socket,
    seq: u32,
}

/// What an rtnetlink request failed with: the kernel's errno.
fn errno(what: &str, code: i32) -> NetError {
    NetError::Netlink {
        what: what.to_owned(),
        source: std::io::Error::from_raw_os_error(code),
    }
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub(crate) fn new() -> Result<Self, NetError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| NetError::Netlink {
            what: "open an rtnetlink socket".into(),
            source: e,
        })?;
        sock.bind_auto().map_err(|e| NetError::Netlink {
            what: "bind an rtnetlink socket".into(),
            source: e,
        })?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| NetError::Netlink {
                what: "connect an rtnetlink socket".into(),
                source: e,
            })?;
        Ok(Self { sock, seq: 1 })
    }

    /// A socket in the network namespace `ns` (an open `/proc/PID/ns/net` or a bind mount
    /// of one), made on a thread of its own that joins it.
    pub(crate) fn in_namespace(ns: BorrowedFd<'_>) -> Result<Self, NetError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                rustix::thread::move_into_link_name_space(
                    ns,
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| NetError::Netlink {
                    what: "join the container's network namespace".into(),
                    source: e.into(),
                })?;
                Self::new()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetError::Netlink {
                    what: "join the container's network namespace".into(),
                    source: std::io::Error::other("the thread panicked"),
                })
            })
        })
    }

    /// Sends one request and collects the answers up to its acknowledgement (or the end of a
    /// dump). `Err` carries the kernel's errno.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, i32> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        self.seq = self.seq.wrapping_add(1);
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock
            .send(&buf, 0)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self
                .sock
                .recv_from_full()
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
            let mut off = 0;
            while off < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|_| libc::EBADMSG)?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(libc::EBADMSG);
                }
                off += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(c) => Err(-c.get()),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if reply.header.flags & netlink_packet_core::NLM_F_MULTIPART == 0
                            && flags & NLM_F_ACK == 0
                        {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The index of link `name`, if it exists.
    pub(crate) fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(v) => Ok(v.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(libc::ENODEV) => Ok(None),
            Err(c) => Err(errno(&format!("look up link {name}"), c)),
        }
    }

    /// Creates bridge `name` unless it exists; its index.
    pub(crate) fn ensure_bridge(&mut self, name: &str) -> Result<u32, NetError> {
        if let Some(i) = self.link_index(name)? {
            return Ok(i);
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        match self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) | Err(libc::EEXIST) => {}
            Err(c) => return Err(errno(&format!("create bridge {name}"), c)),
        }
        let i = self
            .link_index(name)?
            .ok_or_else(|| errno(&format!("create bridge {name}"), libc::ENODEV))?;
        Ok(i)
    }

    /// Creates a veth pair: `host` here, attached to bridge `master` and up; `peer` moved
    /// into the namespace `peer_ns` (it is configured from a socket there).
    pub(crate) fn add_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
    ) -> Result<(), NetError> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_fd().as_raw_fd()));
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(host.to_owned()));
        m.attributes.push(LinkAttribute::Controller(master));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
        .map_err(|c| errno(&format!("create veth pair {host}/{peer}"), c))
    }

    /// Sets link `index` up.
    pub(crate) fn set_up(&mut self, index: u32) -> Result<(), NetError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(m), NLM_F_ACK)
            .map(drop)
            .map_err(|c| errno(&format!("set link {index} up"), c))
    }

    /// Sets the MAC address of link `index`.
    pub(crate) fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.request(RouteNetlinkMessage::SetLink(m), NLM_F_ACK)
            .map(drop)
            .map_err(|c| errno(&format!("set the MAC address of link {index}"), c))
    }

    /// Deletes link `name`; false when there was none.
    pub(crate) fn delete_link(&mut self, name: &str) -> Result<bool, NetError> {
        let Some(index) = self.link_index(name)? else {
            return Ok(false);
        };
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(m), NLM_F_ACK) {
            Ok(_) => Ok(true),
            Err(libc::ENODEV) => Ok(false),
            Err(c) => Err(errno(&format!("delete link {name}"), c)),
        }
    }

    /// Adds `addr/prefix` to link `index` (an address already there is not an error).
    pub(crate) fn add_address(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        let bits = u32::from(addr) | (u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0));
        m.attributes
            .push(AddressAttribute::Broadcast(Ipv4Addr::from(bits)));
        match self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) | Err(libc::EEXIST) => Ok(()),
            Err(c) => Err(errno(&format!("add address {addr}/{prefix}"), c)),
        }
    }

    /// Adds IPv6 address `addr/prefix` to link `index` without duplicate address detection
    /// (the address is usable at once; the network's allocation keeps it unique), an
    /// address already there not being an error.
    pub(crate) fn add_address6(
        &mut self,
        index: u32,
        addr: Ipv6Addr,
        prefix: u8,
    ) -> Result<(), NetError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V6(addr)));
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        match self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) | Err(libc::EEXIST) => Ok(()),
            Err(c) => Err(errno(&format!("add address {addr}/{prefix}"), c)),
        }
    }

    /// Adds the default route through `gateway`, in its address family.
    pub(crate) fn add_default_route(&mut self, gateway: IpAddr) -> Result<(), NetError> {
        let mut m = RouteMessage::default();
        m.header.address_family = match gateway {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.table = libc::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        match self.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) | Err(libc::EEXIST) => Ok(()),
            Err(c) => Err(errno(&format!("add the default route via {gateway}"), c)),
        }
    }
}
