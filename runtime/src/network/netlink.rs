//! The few rtnetlink requests networking needs (bridges, veth pairs, addresses, routes),
//! sent on a synchronous NETLINK_ROUTE socket: no `ip` process, no async runtime.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A NETLINK_ROUTE socket in the caller's network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// Open a socket in the current network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Send one request and collect the answers until the kernel's ACK (or error).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        self.seq = self.seq.wrapping_add(1);
        hdr.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut out = Vec::new();
        // Bounded: the kernel answers a request with a few messages then the ACK.
        for _ in 0..1024 {
            let mut rbuf: Vec<u8> = Vec::with_capacity(65536);
            let n = self.sock.recv(&mut rbuf, 0)?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..n])
                    .map_err(|e| io::Error::other(format!("bad netlink answer: {e}")))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(io::Error::other("bad netlink answer: empty message"));
                }
                if msg.header.sequence_number == self.seq {
                    match msg.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                                None => Ok(out),
                            };
                        }
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::InnerMessage(m) => out.push(m),
                        _ => {}
                    }
                }
                off += (len + 3) & !3;
            }
        }
        Err(io::Error::other("netlink: no answer from the kernel"))
    }

    /// The index of interface `name`, or None if there is none.
    pub fn index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(v) => Ok(v.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a bridge `name` with MTU `mtu`.
    pub fn add_bridge(&mut self, name: &str, mtu: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Create a veth pair: `host` here, its peer `peer` directly in the network namespace
    /// of process `pid` (so it never appears in the host's namespace under a clashing name).
    pub fn add_veth(&mut self, host: &str, peer: &str, pid: u32, mtu: u32) -> io::Result<()> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.into()));
        p.attributes.push(LinkAttribute::NetNsPid(pid));
        p.attributes.push(LinkAttribute::Mtu(mtu));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(host.into()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Put interface `index` up, optionally enslaving it to bridge `master`.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(b) = master {
            m.attributes.push(LinkAttribute::Controller(b));
        }
        self.request(RouteNetlinkMessage::SetLink(m), 0).map(drop)
    }

    /// Delete interface `name`; Ok(false) if there was none.
    pub fn delete(&mut self, name: &str) -> io::Result<bool> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(RouteNetlinkMessage::DelLink(m), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Add `addr/prefix` to interface `index` (EEXIST is success: it is there).
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        let o = octets_or(addr, prefix);
        m.attributes.push(AddressAttribute::Broadcast(o));
        match self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Add the default route via `gateway` on interface `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        self.request(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }
}

/// The broadcast address of `addr/prefix`.
fn octets_or(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    };
    Ipv4Addr::from(u32::from(addr) | !mask)
}
