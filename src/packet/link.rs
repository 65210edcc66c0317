//! The link layer: which capture link types nsgd reads ([`LinkType`]) and
//! how to peel a frame down to its network-layer bytes (Ethernet II with any
//! stack of 802.1Q/802.1ad/QinQ tags, Linux cooked capture v1 and v2, raw
//! IP). Owns nothing past the EtherType: the IP layer is `ip.rs`'s job.
//!
//! Ethernet and VLAN headers are read through etherparse's checked header
//! slices. The Linux cooked headers are read by hand: etherparse's
//! `LinuxSllHeaderSlice` rejects packet types and hardware types it does not
//! know (e.g. netlink or loopback captures on `any`), and it has no SLL2.

use etherparse::{EtherType, Ethernet2HeaderSlice, SingleVlanHeaderSlice};

use super::DropReason;

/// The most VLAN tags one frame may stack (QinQ uses two; real networks
/// rarely exceed three). More is treated as hostile.
pub const MAX_VLAN_TAGS: usize = 8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_PROVIDER_BRIDGING: u16 = 0x88a8;
const ETHERTYPE_QINQ_LEGACY: u16 = 0x9100;

/// Linux cooked capture v1 header length.
const SLL_LEN: usize = 16;
/// Linux cooked capture v2 header length.
const SLL2_LEN: usize = 20;
/// `ARPHRD_NETLINK`: the SLL protocol field is then a netlink family, not an
/// EtherType.
const ARPHRD_NETLINK: u16 = 824;

/// A capture's link type: what the bytes at the start of each frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// `LINKTYPE_ETHERNET` (1): Ethernet II, possibly VLAN-tagged.
    Ethernet,
    /// `LINKTYPE_LINUX_SLL` (113): Linux cooked capture v1.
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux cooked capture v2.
    LinuxSll2,
    /// `LINKTYPE_RAW` (101, reported by libpcap on Linux as DLT 12): IPv4 or
    /// IPv6, told apart by the version nibble.
    RawIp,
    /// `LINKTYPE_IPV4` (228): IPv4 only.
    Ipv4,
    /// `LINKTYPE_IPV6` (229): IPv6 only.
    Ipv6,
}

impl LinkType {
    /// The link type of a pcap file header or pcapng interface description.
    ///
    /// Only the low 16 bits name the link type; the bits above carry FCS
    /// information (pcap's "F" flag and FCS length), which is masked off. A
    /// trailing FCS is harmless: IP's own length fields bound the payload.
    pub fn from_linktype(raw: u32) -> Result<LinkType, DropReason> {
        match raw & 0xffff {
            1 => Ok(LinkType::Ethernet),
            113 => Ok(LinkType::LinuxSll),
            276 => Ok(LinkType::LinuxSll2),
            101 | 12 => Ok(LinkType::RawIp),
            228 => Ok(LinkType::Ipv4),
            229 => Ok(LinkType::Ipv6),
            _ => Err(DropReason::UnsupportedLinkType),
        }
    }

    /// The canonical `LINKTYPE_*` number (for writing captures).
    pub fn linktype(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::RawIp => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
        }
    }
}

/// What the link layer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Network<'a> {
    /// Bytes starting at an IPv4 header (not yet checked).
    Ipv4(&'a [u8]),
    /// Bytes starting at an IPv6 header (not yet checked).
    Ipv6(&'a [u8]),
    /// A payload that is not IP (ARP, MPLS, LLDP, 802.3 length …).
    Other { ethertype: u16 },
}

/// Peel the link header(s) off `frame`.
pub(super) fn network(link: LinkType, frame: &[u8]) -> Result<Network<'_>, DropReason> {
    match link {
        LinkType::Ethernet => {
            let header = Ethernet2HeaderSlice::from_slice(frame)
                .map_err(|_| DropReason::TruncatedEthernet)?;
            let rest = &frame[header.slice().len()..];
            by_ethertype(header.ether_type(), rest)
        }
        LinkType::LinuxSll => {
            let header = frame.get(..SLL_LEN).ok_or(DropReason::TruncatedLinuxSll)?;
            let hardware = u16::from_be_bytes([header[2], header[3]]);
            let protocol = u16::from_be_bytes([header[14], header[15]]);
            cooked(hardware, protocol, &frame[SLL_LEN..])
        }
        LinkType::LinuxSll2 => {
            let header = frame.get(..SLL2_LEN).ok_or(DropReason::TruncatedLinuxSll)?;
            let protocol = u16::from_be_bytes([header[0], header[1]]);
            let hardware = u16::from_be_bytes([header[8], header[9]]);
            cooked(hardware, protocol, &frame[SLL2_LEN..])
        }
        LinkType::RawIp => match frame.first() {
            None => Err(DropReason::TruncatedIp),
            Some(byte) => match byte >> 4 {
                4 => Ok(Network::Ipv4(frame)),
                6 => Ok(Network::Ipv6(frame)),
                _ => Err(DropReason::BadIpVersion),
            },
        },
        LinkType::Ipv4 => Ok(Network::Ipv4(frame)),
        LinkType::Ipv6 => Ok(Network::Ipv6(frame)),
    }
}

fn cooked(hardware: u16, protocol: u16, rest: &[u8]) -> Result<Network<'_>, DropReason> {
    if hardware == ARPHRD_NETLINK {
        return Ok(Network::Other {
            ethertype: protocol,
        });
    }
    // Linux moves VLAN tags into metadata for `any` captures, but a tag left
    // in the payload is still followed.
    by_ethertype(EtherType(protocol), rest)
}

/// Follow VLAN tags until a non-VLAN EtherType, then hand over the payload.
fn by_ethertype(mut ethertype: EtherType, mut rest: &[u8]) -> Result<Network<'_>, DropReason> {
    let mut tags = 0;
    loop {
        match ethertype.0 {
            ETHERTYPE_IPV4 => return Ok(Network::Ipv4(rest)),
            ETHERTYPE_IPV6 => return Ok(Network::Ipv6(rest)),
            ETHERTYPE_VLAN | ETHERTYPE_PROVIDER_BRIDGING | ETHERTYPE_QINQ_LEGACY => {
                if tags == MAX_VLAN_TAGS {
                    return Err(DropReason::VlanTooDeep);
                }
                tags += 1;
                let tag = SingleVlanHeaderSlice::from_slice(rest)
                    .map_err(|_| DropReason::TruncatedVlan)?;
                ethertype = tag.ether_type();
                rest = &rest[tag.slice().len()..];
            }
            other => return Ok(Network::Other { ethertype: other }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xaa; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    fn tag(ethertype: u16) -> [u8; 4] {
        let inner = ethertype.to_be_bytes();
        [0x00, 0x05, inner[0], inner[1]]
    }

    #[test]
    fn link_type_numbers_and_flag_bits() {
        assert_eq!(LinkType::from_linktype(1), Ok(LinkType::Ethernet));
        assert_eq!(LinkType::from_linktype(113), Ok(LinkType::LinuxSll));
        assert_eq!(LinkType::from_linktype(276), Ok(LinkType::LinuxSll2));
        assert_eq!(LinkType::from_linktype(101), Ok(LinkType::RawIp));
        assert_eq!(LinkType::from_linktype(12), Ok(LinkType::RawIp));
        assert_eq!(LinkType::from_linktype(228), Ok(LinkType::Ipv4));
        assert_eq!(LinkType::from_linktype(229), Ok(LinkType::Ipv6));
        // FCS present (bit 26) with a 4-byte FCS length (bits 28..31).
        assert_eq!(
            LinkType::from_linktype(1 | (1 << 26) | (2 << 28)),
            Ok(LinkType::Ethernet)
        );
        assert_eq!(
            LinkType::from_linktype(0),
            Err(DropReason::UnsupportedLinkType)
        );
        assert_eq!(
            LinkType::from_linktype(105),
            Err(DropReason::UnsupportedLinkType)
        );
        for link in [
            LinkType::Ethernet,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
            LinkType::RawIp,
            LinkType::Ipv4,
            LinkType::Ipv6,
        ] {
            assert_eq!(LinkType::from_linktype(link.linktype()), Ok(link));
        }
    }

    #[test]
    fn ethernet_ip_and_non_ip() {
        let frame = ethernet(0x0800, &[0x45, 1, 2]);
        assert_eq!(
            network(LinkType::Ethernet, &frame),
            Ok(Network::Ipv4(&[0x45, 1, 2][..]))
        );
        let frame = ethernet(0x86dd, &[0x60]);
        assert_eq!(
            network(LinkType::Ethernet, &frame),
            Ok(Network::Ipv6(&[0x60][..]))
        );
        for ethertype in [0x0806, 0x8847, 0x88cc, 0x0026] {
            let frame = ethernet(ethertype, &[0; 30]);
            assert_eq!(
                network(LinkType::Ethernet, &frame),
                Ok(Network::Other { ethertype })
            );
        }
        assert_eq!(
            network(LinkType::Ethernet, &[0; 13]),
            Err(DropReason::TruncatedEthernet)
        );
    }

    #[test]
    fn vlan_stacks() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&tag(0x8100));
        payload.extend_from_slice(&tag(0x9100));
        payload.extend_from_slice(&tag(0x0800));
        payload.push(0x45);
        let frame = ethernet(0x88a8, &payload);
        assert_eq!(
            network(LinkType::Ethernet, &frame),
            Ok(Network::Ipv4(&[0x45][..]))
        );

        let frame = ethernet(0x8100, &[0, 5, 8]);
        assert_eq!(
            network(LinkType::Ethernet, &frame),
            Err(DropReason::TruncatedVlan)
        );

        let mut payload = Vec::new();
        for _ in 0..MAX_VLAN_TAGS {
            payload.extend_from_slice(&tag(0x8100));
        }
        payload.extend_from_slice(&tag(0x0800));
        let frame = ethernet(0x8100, &payload);
        assert_eq!(
            network(LinkType::Ethernet, &frame),
            Err(DropReason::VlanTooDeep)
        );

        // Exactly the limit is accepted.
        let mut payload = Vec::new();
        for _ in 0..MAX_VLAN_TAGS - 1 {
            payload.extend_from_slice(&tag(0x8100));
        }
        payload.extend_from_slice(&tag(0x86dd));
        let frame = ethernet(0x8100, &payload);
        assert_eq!(
            network(LinkType::Ethernet, &frame),
            Ok(Network::Ipv6(&[][..]))
        );
    }

    #[test]
    fn linux_cooked_v1_and_v2() {
        let mut sll = vec![0, 0, 0x03, 0x04, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.push(0x45);
        assert_eq!(
            network(LinkType::LinuxSll, &sll),
            Ok(Network::Ipv4(&[0x45][..]))
        );
        sll[14] = 0x08;
        sll[15] = 0x06;
        assert_eq!(
            network(LinkType::LinuxSll, &sll),
            Ok(Network::Other { ethertype: 0x0806 })
        );
        // Netlink: the protocol field is a netlink family, never IP.
        sll[2..4].copy_from_slice(&824u16.to_be_bytes());
        sll[14..16].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(
            network(LinkType::LinuxSll, &sll),
            Ok(Network::Other { ethertype: 0x0800 })
        );
        assert_eq!(
            network(LinkType::LinuxSll, &sll[..15]),
            Err(DropReason::TruncatedLinuxSll)
        );

        let mut sll2 = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.push(0x60);
        assert_eq!(
            network(LinkType::LinuxSll2, &sll2),
            Ok(Network::Ipv6(&[0x60][..]))
        );
        assert_eq!(
            network(LinkType::LinuxSll2, &sll2[..19]),
            Err(DropReason::TruncatedLinuxSll)
        );
    }

    #[test]
    fn raw_ip_by_version_nibble() {
        assert_eq!(
            network(LinkType::RawIp, &[0x45]),
            Ok(Network::Ipv4(&[0x45][..]))
        );
        assert_eq!(
            network(LinkType::RawIp, &[0x60]),
            Ok(Network::Ipv6(&[0x60][..]))
        );
        assert_eq!(
            network(LinkType::RawIp, &[0x50]),
            Err(DropReason::BadIpVersion)
        );
        assert_eq!(network(LinkType::RawIp, &[]), Err(DropReason::TruncatedIp));
        assert_eq!(network(LinkType::Ipv4, &[]), Ok(Network::Ipv4(&[][..])));
        assert_eq!(network(LinkType::Ipv6, &[]), Ok(Network::Ipv6(&[][..])));
    }
}
