//! The machine's listening TCP ports, asked of the kernel's socket diagnostics (what `ss -lt`
//! uses) for sockets in LISTEN only. Reading /proc/net/tcp{,6} instead walks every bucket of
//! the established-connections table as well, which on this class of machine costs over 10 ms
//! each run: a third of a converged re-run. /proc stays the fallback.

use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};
use std::collections::BTreeSet;
use std::os::fd::AsRawFd;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const NLMSG_HDR: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then a 48-byte socket id.
const REQ_LEN: usize = 56;

/// Ports with a TCP socket in LISTEN, IPv4 and IPv6.
pub(crate) fn listening_tcp_ports() -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for family in [nix::libc::AF_INET, nix::libc::AF_INET6] {
        match diag_listening(family as u8) {
            Some(found) => ports.extend(found),
            None => {
                let table = if family == nix::libc::AF_INET {
                    "/proc/net/tcp"
                } else {
                    "/proc/net/tcp6"
                };
                if let Some(t) = super::read_kernel_file(table) {
                    ports.extend(listening_in_proc_table(&t));
                }
            }
        }
    }
    ports
}

/// One sock_diag dump of the family's TCP sockets in LISTEN; None when the kernel does not
/// answer it (no inet_diag), so the caller reads /proc.
fn diag_listening(family: u8) -> Option<Vec<u16>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    let mut msg = Vec::with_capacity(NLMSG_HDR + REQ_LEN);
    msg.extend_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.extend_from_slice(&[family, nix::libc::IPPROTO_TCP as u8, 0, 0]);
    msg.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    msg.resize(NLMSG_HDR + REQ_LEN, 0); // any address, any port, any interface
    if send(fd.as_raw_fd(), &msg, MsgFlags::empty()).ok()? != msg.len() {
        return None;
    }
    let mut ports = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).ok()?;
        if n == 0 {
            return None;
        }
        let mut off = 0;
        while off + NLMSG_HDR <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().ok()?) as usize;
            let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().ok()?);
            match kind {
                NLMSG_DONE => return Some(ports),
                NLMSG_ERROR => return None,
                _ => {}
            }
            // `struct inet_diag_msg`: family, state, timer, retrans, then the socket id,
            // whose first field is the source port in network byte order.
            let sport = buf.get(off + NLMSG_HDR + 4..off + NLMSG_HDR + 6)?;
            ports.push(u16::from_be_bytes([sport[0], sport[1]]));
            if len < NLMSG_HDR {
                return None;
            }
            off += (len + 3) & !3;
        }
    }
}

/// Ports in LISTEN state (0A) in a /proc/net/tcp{,6} table.
pub(crate) fn listening_in_proc_table(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || f[3] != "0A" {
                return None;
            }
            let port = f[1].rsplit(':').next()?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_table_gives_listening_ports_only() {
        let tcp = "  sl  local_address rem_address   st\n   0: 00000000:1A0B 00000000:0000 0A 0\n   1: 0100007F:0050 0100007F:9000 01 0\n";
        assert_eq!(listening_in_proc_table(tcp), vec![0x1A0B]);
    }

    #[test]
    fn sock_diag_and_proc_see_the_same_listening_ports() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v4_port = v4.local_addr().unwrap().port();
        let diag = diag_listening(nix::libc::AF_INET as u8).expect("the kernel answers sock_diag");
        assert!(diag.contains(&v4_port), "{v4_port} not in {diag:?}");
        let proc: BTreeSet<u16> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|t| super::super::read_kernel_file(t))
            .flat_map(|t| listening_in_proc_table(&t))
            .collect();
        let all = listening_tcp_ports();
        // Other processes may open or close listeners between the two reads: compare what
        // this test holds open, and that neither read invents what the other does not know.
        assert!(all.contains(&v4_port) && proc.contains(&v4_port));
        // A port connected to but not listening is not reported.
        let client = std::net::TcpStream::connect(("127.0.0.1", v4_port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert!(!listening_tcp_ports().contains(&client_port));
        // A closed listener is not reported either. The kernel may take a moment to tear down a
        // listener with a queued connection, so look again for up to 2 s.
        drop(client);
        drop(v4);
        let gone = (0..200).any(|_| {
            let listening = listening_tcp_ports().contains(&v4_port);
            if listening {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            !listening
        });
        assert!(gone, "{v4_port} still listening 2 s after it was closed");
    }
}
