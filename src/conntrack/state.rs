//! Per-protocol connection state machines as pure functions: the next state
//! of a flow given the side a packet came from and its TCP flags, and the
//! *lane* (timeout and eviction class) a state belongs to. No table, no
//! clock: the table calls these and owns the consequences.

/// TCP flag bits as they appear in the TCP header's flags byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

use tcp_flags::{ACK, FIN, RST, SYN};

/// IP protocol numbers the state machines distinguish.
pub const PROTOCOL_ICMP: u8 = 1;
pub const PROTOCOL_TCP: u8 = 6;
pub const PROTOCOL_UDP: u8 = 17;
pub const PROTOCOL_ICMPV6: u8 = 58;

/// Whether a TCP packet may open a connection under strict TCP: a bare SYN
/// (no ACK, RST or FIN). Anything else starting a flow is a mid-stream
/// pickup, which the table tracks but the dataplane may refuse
/// (`--strict-tcp`).
#[inline]
pub fn tcp_can_open(tcp_flags: u8) -> bool {
    tcp_flags & (SYN | ACK | RST | FIN) == SYN
}

/// Which end of a connection a packet came from. `Original` is the direction
/// of the packet that created the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    Original = 0,
    Reply = 1,
}

impl Side {
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Where a connection stands. TCP states follow the handshake and teardown;
/// every other protocol only distinguishes "reply seen" or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowState {
    /// Original side sent a SYN, nothing back yet.
    TcpSynSent,
    /// The reply side answered the SYN (SYN-ACK, or SYN in a simultaneous
    /// open); waiting for the original side's ACK.
    TcpSynReceived,
    /// Handshake completed, or a mid-stream pickup whose reply side spoke.
    TcpEstablished,
    /// Picked up mid-stream (first packet was no bare SYN) and the reply side
    /// has not been seen yet: treated like a half-open connection.
    TcpMidStream,
    /// The original side sent a FIN; the reply side has not.
    TcpFinOriginal,
    /// The reply side sent a FIN; the original side has not.
    TcpFinReply,
    /// Both sides sent a FIN.
    TcpTimeWait,
    /// A RST was seen.
    TcpClosed,
    /// UDP, ICMP echo or another protocol: only the original side seen.
    Unreplied,
    /// UDP, ICMP echo or another protocol: the reply side was seen too.
    Replied,
}

impl FlowState {
    /// The state a flow starts in, from its protocol and first packet.
    pub fn initial(protocol: u8, tcp_flags: u8) -> FlowState {
        if protocol != PROTOCOL_TCP {
            return FlowState::Unreplied;
        }
        if tcp_flags & RST != 0 {
            FlowState::TcpClosed
        } else if tcp_flags & FIN != 0 {
            FlowState::TcpFinOriginal
        } else if tcp_can_open(tcp_flags) {
            FlowState::TcpSynSent
        } else {
            FlowState::TcpMidStream
        }
    }

    /// The state after one more packet from `side` (`tcp_flags` is ignored
    /// for non-TCP flows).
    pub fn next(self, side: Side, tcp_flags: u8) -> FlowState {
        use FlowState::*;
        let reply = side == Side::Reply;
        match self {
            Unreplied if reply => Replied,
            Unreplied | Replied => self,
            _ if tcp_flags & RST != 0 => TcpClosed,
            // A fresh bare SYN from the original side on a finished
            // connection is the port being reused: start over.
            TcpTimeWait | TcpClosed if !reply && tcp_can_open(tcp_flags) => TcpSynSent,
            TcpTimeWait | TcpClosed => self,
            _ if tcp_flags & FIN != 0 => match (self, reply) {
                (TcpFinOriginal, true) | (TcpFinReply, false) => TcpTimeWait,
                (TcpFinOriginal, false) | (TcpFinReply, true) => self,
                (_, false) => TcpFinOriginal,
                (_, true) => TcpFinReply,
            },
            TcpSynSent if reply && tcp_flags & SYN != 0 => TcpSynReceived,
            TcpSynReceived if !reply && tcp_flags & (SYN | ACK) == ACK => TcpEstablished,
            TcpMidStream if reply => TcpEstablished,
            _ => self,
        }
    }

    /// An open connection that both sides have spoken on.
    #[inline]
    pub fn is_established(self) -> bool {
        matches!(self, FlowState::TcpEstablished | FlowState::Replied)
    }

    /// The connection was torn down (both FINs, or a RST).
    #[inline]
    pub fn is_closed(self) -> bool {
        matches!(self, FlowState::TcpTimeWait | FlowState::TcpClosed)
    }
}

/// Which eviction class an entry is in when the table is full: expired
/// entries go first, then unestablished ones, established ones last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictionClass {
    Expired,
    /// Half-open or mid-stream TCP, closing TCP, unanswered UDP/ICMP/other,
    /// and deny entries.
    Unestablished,
    Established,
}

/// A lane groups entries that share one idle timeout and one eviction class.
/// Within a lane entries are kept in last-seen order, so the head is always
/// the first to expire and the oldest to evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Lane {
    TcpOpening = 0,
    TcpEstablished,
    TcpClosing,
    UdpUnreplied,
    UdpReplied,
    IcmpUnreplied,
    IcmpReplied,
    OtherUnreplied,
    OtherReplied,
    Denied,
}

pub(crate) const LANES: usize = 10;

pub(crate) const ALL_LANES: [Lane; LANES] = [
    Lane::TcpOpening,
    Lane::TcpEstablished,
    Lane::TcpClosing,
    Lane::UdpUnreplied,
    Lane::UdpReplied,
    Lane::IcmpUnreplied,
    Lane::IcmpReplied,
    Lane::OtherUnreplied,
    Lane::OtherReplied,
    Lane::Denied,
];

impl Lane {
    pub(crate) fn of(allowed: bool, protocol: u8, state: FlowState) -> Lane {
        if !allowed {
            return Lane::Denied;
        }
        use FlowState::*;
        match state {
            TcpSynSent | TcpSynReceived | TcpMidStream => Lane::TcpOpening,
            TcpEstablished => Lane::TcpEstablished,
            TcpFinOriginal | TcpFinReply | TcpTimeWait | TcpClosed => Lane::TcpClosing,
            Unreplied | Replied => {
                let replied = state == Replied;
                match (protocol, replied) {
                    (PROTOCOL_UDP, false) => Lane::UdpUnreplied,
                    (PROTOCOL_UDP, true) => Lane::UdpReplied,
                    (PROTOCOL_ICMP | PROTOCOL_ICMPV6, false) => Lane::IcmpUnreplied,
                    (PROTOCOL_ICMP | PROTOCOL_ICMPV6, true) => Lane::IcmpReplied,
                    (_, false) => Lane::OtherUnreplied,
                    (_, true) => Lane::OtherReplied,
                }
            }
        }
    }

    pub(crate) fn class(self) -> EvictionClass {
        match self {
            Lane::TcpEstablished | Lane::UdpReplied | Lane::IcmpReplied | Lane::OtherReplied => {
                EvictionClass::Established
            }
            _ => EvictionClass::Unestablished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FlowState::*;

    #[test]
    fn handshake_and_teardown() {
        let s = FlowState::initial(PROTOCOL_TCP, SYN);
        assert_eq!(s, TcpSynSent);
        let s = s.next(Side::Reply, SYN | ACK);
        assert_eq!(s, TcpSynReceived);
        let s = s.next(Side::Original, ACK);
        assert_eq!(s, TcpEstablished);
        let s = s.next(Side::Reply, FIN | ACK);
        assert_eq!(s, TcpFinReply);
        let s = s.next(Side::Reply, ACK);
        assert_eq!(s, TcpFinReply);
        let s = s.next(Side::Original, FIN | ACK);
        assert_eq!(s, TcpTimeWait);
        assert_eq!(s.next(Side::Original, SYN), TcpSynSent);
    }

    #[test]
    fn can_open_only_on_bare_syn() {
        assert!(tcp_can_open(SYN));
        assert!(tcp_can_open(SYN | tcp_flags::PSH));
        assert!(!tcp_can_open(SYN | ACK));
        assert!(!tcp_can_open(ACK));
        assert!(!tcp_can_open(SYN | RST));
        assert_eq!(FlowState::initial(PROTOCOL_TCP, ACK), TcpMidStream);
        assert_eq!(TcpMidStream.next(Side::Reply, ACK), TcpEstablished);
        assert_eq!(TcpMidStream.next(Side::Original, RST), TcpClosed);
    }
}
