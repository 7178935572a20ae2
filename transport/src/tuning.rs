//! quinn's flow-control, ACK, congestion and packet-size settings, as the
//! transport applies them to every connection ([`QuicTuning`], the
//! [`crate::TransportConfig::quic`] field). Each default is the value the
//! transport benchmark measured as best or as good as any on loopback and
//! is explained in docs/PERFORMANCE.md §9.

use std::time::Duration;

use crate::MAX_UDP_PAYLOAD;

/// Default of [`QuicTuning::initial_rtt`].
pub const DEFAULT_INITIAL_RTT: Duration = Duration::from_millis(100);

/// Tunables passed to quinn's `TransportConfig` for every connection.
#[derive(Debug, Clone, PartialEq)]
pub struct QuicTuning {
    /// Bytes one stream may have in flight towards us unread (the stream
    /// receive window; default 1.25 MB, quinn's: 100 Mbit/s x 100 ms).
    /// Worst-case memory per connection is this times the concurrent
    /// streams, bounded by [`Self::receive_window`].
    pub stream_receive_window: u32,
    /// Bytes all streams of a connection may have in flight towards us
    /// unread (default 8 x the stream window, 10 MB).
    pub receive_window: u64,
    /// Bytes we keep unacknowledged per connection across all streams (the
    /// send window; default 10 MB, quinn's).
    pub send_window: u64,
    /// ACK frequency (draft-ietf-quic-ack-frequency): ask the peer to ACK
    /// only every this many ack-eliciting packets. `None` (default) keeps
    /// RFC 9000's every-second-packet rule and sends no ACK_FREQUENCY
    /// frames.
    pub ack_eliciting_threshold: Option<u32>,
    /// With [`Self::ack_eliciting_threshold`]: the largest ACK delay asked
    /// of the peer (`None`: the peer's own max_ack_delay).
    pub max_ack_delay: Option<Duration>,
    /// The congestion window a connection starts with, in bytes (default
    /// quinn's: 14 720, ten 1472-byte packets). Pacing spreads each window
    /// over the RTT; quinn 0.11 has no switch to turn pacing off, so this
    /// and the RTT are what it follows.
    pub initial_window: u64,
    /// Largest UDP payload MTU discovery may reach (default
    /// [`MAX_UDP_PAYLOAD`], 1400, so a QUIC packet still fits in a relay
    /// frame). Never set above that when relays are used.
    pub max_udp_payload: u16,
    /// Hand quinn-udp batches of packets for one GSO send (default true;
    /// quinn-udp falls back to one packet per syscall where the OS lacks
    /// GSO).
    pub segmentation_offload: bool,
    /// The RTT a connection assumes before it has measured one (default
    /// 100 ms; quinn's is 333 ms). It sets the first probe timeout of the
    /// handshake, about three times this, so a lost Initial or Handshake
    /// packet is resent after about 0.3 s instead of 1 s (then 2 s, 4 s,
    /// ...: a second loss cost up to 13 s with quinn's value). Set it to
    /// the longest RTT the mesh normally sees: below the real RTT, the
    /// first handshake packets are sent twice. Measured in
    /// docs/PERFORMANCE.md §6, "Under 5% loss".
    pub initial_rtt: Duration,
}

impl Default for QuicTuning {
    fn default() -> Self {
        Self {
            stream_receive_window: 1_250_000,
            receive_window: 10_000_000,
            send_window: 10_000_000,
            ack_eliciting_threshold: None,
            max_ack_delay: None,
            initial_window: 14_720,
            max_udp_payload: MAX_UDP_PAYLOAD,
            segmentation_offload: true,
            initial_rtt: DEFAULT_INITIAL_RTT,
        }
    }
}

impl QuicTuning {
    /// Writes these settings into `transport`.
    pub(crate) fn apply(&self, transport: &mut quinn::TransportConfig) -> Result<(), String> {
        let window = |v: u64, what: &str| {
            quinn::VarInt::from_u64(v).map_err(|_| format!("{what}: {v} is too large"))
        };
        transport
            .stream_receive_window(quinn::VarInt::from_u32(self.stream_receive_window))
            .receive_window(window(self.receive_window, "receive window")?)
            .send_window(self.send_window)
            .enable_segmentation_offload(self.segmentation_offload)
            .initial_rtt(self.initial_rtt);
        let mut cubic = quinn::congestion::CubicConfig::default();
        cubic.initial_window(self.initial_window);
        transport.congestion_controller_factory(std::sync::Arc::new(cubic));
        if let Some(threshold) = self.ack_eliciting_threshold {
            let mut ack = quinn::AckFrequencyConfig::default();
            ack.ack_eliciting_threshold(quinn::VarInt::from_u32(threshold))
                .max_ack_delay(self.max_ack_delay);
            transport.ack_frequency_config(Some(ack));
        }
        Ok(())
    }
}
