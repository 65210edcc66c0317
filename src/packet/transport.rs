//! TCP and UDP: the ports (and TCP's flags byte) at the start of the
//! transport bytes. Every other protocol number has no ports here (SCTP and
//! DCCP included: NSG rules give ports meaning for TCP and UDP only).
//!
//! The fields are read at their fixed offsets instead of through
//! etherparse's `TcpHeaderSlice`/`UdpHeaderSlice`, because those need the
//! whole header (TCP options included) while a snap length often cuts the
//! options off: a packet is judged as soon as its ports (and, for TCP, its
//! flags) were captured. UDP's length and checksum are never trusted or
//! needed (fuzzed captures carry bogus lengths).

use super::ip::Mode;
use super::DropReason;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// The bytes a TCP header needs for judging: ports, sequence and
/// acknowledgement numbers, data offset and the flags byte.
const TCP_JUDGED_LEN: usize = 14;
/// UDP ports.
const PORTS_LEN: usize = 4;

/// Ports and TCP flags; all zero for portless protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Ports {
    pub source: u16,
    pub destination: u16,
    pub tcp_flags: u8,
}

/// Read the ports of `protocol` from its captured header bytes.
///
/// On the wire a TCP header must reach its flags byte and declare a data
/// offset of at least 5, and a UDP header must hold both ports. In an ICMP
/// quote only the ports matter (RFC 792 quotes 8 bytes) and a quote too
/// short for them yields zero ports rather than an error.
pub(super) fn ports(protocol: u8, bytes: &[u8], mode: Mode) -> Result<Ports, DropReason> {
    if protocol != TCP && protocol != UDP {
        return Ok(Ports::default());
    }
    let Some(ports) = bytes.get(..PORTS_LEN) else {
        return match mode {
            Mode::Packet => Err(DropReason::TruncatedTransport),
            Mode::Quote => Ok(Ports::default()),
        };
    };
    let source = u16::from_be_bytes([ports[0], ports[1]]);
    let destination = u16::from_be_bytes([ports[2], ports[3]]);
    let mut tcp_flags = 0;
    if protocol == TCP && mode == Mode::Packet {
        let header = bytes
            .get(..TCP_JUDGED_LEN)
            .ok_or(DropReason::TruncatedTransport)?;
        if header[12] >> 4 < 5 {
            return Err(DropReason::BadTcpHeaderLength);
        }
        tcp_flags = header[13];
    }
    Ok(Ports {
        source,
        destination,
        tcp_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: [u8; 20] = [
        0x04, 0xd2, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn tcp_ports_and_flags() {
        let ports = ports(TCP, &SYN, Mode::Packet).unwrap();
        assert_eq!(
            (ports.source, ports.destination, ports.tcp_flags),
            (1234, 80, 0x02)
        );
        // Options cut by the snap length: still judged.
        let mut with_options = SYN;
        with_options[12] = 0x80;
        assert!(super::ports(TCP, &with_options, Mode::Packet).is_ok());
        // Cut before the flags.
        assert_eq!(
            super::ports(TCP, &SYN[..13], Mode::Packet),
            Err(DropReason::TruncatedTransport)
        );
        let mut bad = SYN;
        bad[12] = 0x40;
        assert_eq!(
            super::ports(TCP, &bad, Mode::Packet),
            Err(DropReason::BadTcpHeaderLength)
        );
    }

    #[test]
    fn udp_ports_ignore_length_field() {
        let udp = [0x00, 0x35, 0x9c, 0x40, 0xff, 0xf4, 0, 0];
        let ports = ports(UDP, &udp, Mode::Packet).unwrap();
        assert_eq!(
            (ports.source, ports.destination, ports.tcp_flags),
            (53, 40000, 0)
        );
        assert!(super::ports(UDP, &udp[..4], Mode::Packet).is_ok());
        assert_eq!(
            super::ports(UDP, &udp[..3], Mode::Packet),
            Err(DropReason::TruncatedTransport)
        );
    }

    #[test]
    fn quotes_need_only_ports() {
        let ports = ports(TCP, &SYN[..8], Mode::Quote).unwrap();
        assert_eq!(
            (ports.source, ports.destination, ports.tcp_flags),
            (1234, 80, 0)
        );
        assert_eq!(
            super::ports(UDP, &SYN[..2], Mode::Quote),
            Ok(Ports::default())
        );
    }

    #[test]
    fn other_protocols_have_no_ports() {
        for protocol in [1, 50, 51, 47, 132, 58] {
            assert_eq!(ports(protocol, &[], Mode::Packet), Ok(Ports::default()));
        }
    }
}
