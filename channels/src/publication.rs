//! A publisher's side of one publishing session: sequence numbers, the
//! window of messages the owner has not acknowledged, and their resend
//! after a reconnect (the owner tells the last sequence number it took, so
//! only the missing ones go again and the owner drops any repeat).
//! [`Publication::try_publish`] refuses with `would-block` instead of
//! waiting when the window is full.
//!
//! Messages the window lets out are not framed until they are polled:
//! [`Publication::poll_transmit`] frames each as a `Publish`, and
//! [`Publication::poll_publish`] hands it over bare, for a driver that
//! passes a run of them on at once (the node does, to an owner in the same
//! process). Either way they go before the session's other frames queued
//! at the time, so a close follows every message published before it.

use std::collections::VecDeque;

use bytes::Bytes;
use relay_proto::wire::channel::{ChannelFrame, Reason, MAX_DATA};
use thiserror::Error;

/// Messages a session buffers before the owner accepted it.
pub const OPENING_WINDOW: usize = 256;

/// What the publisher sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubEvent {
    /// The owner accepted the session.
    Accepted,
    /// The owner took messages `from..=seq` (every one not acknowledged
    /// before): `delivered` of `targets` got each of them.
    Ack {
        /// The first sequence number acknowledged.
        from: u64,
        /// The last sequence number acknowledged.
        seq: u64,
        /// Targets that got each message.
        delivered: u32,
        /// Targets then.
        targets: u32,
    },
    /// Refused.
    Denied(Reason),
    /// Ended by the owner.
    Ended(Reason),
}

/// A publish was not taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublishRefused {
    /// The window is full: wait for acknowledgements.
    #[error("would-block: the owner has not acknowledged enough messages yet")]
    WouldBlock,
    /// The session is over.
    #[error("ended: the publishing session is over")]
    Ended,
    /// Larger than [`MAX_DATA`].
    #[error("too-large: a message is at most {MAX_DATA} bytes")]
    TooLarge,
}

impl PublishRefused {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WouldBlock => "would-block",
            Self::Ended => "ended",
            Self::TooLarge => "too-large",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Opening,
    Live,
    Disconnected,
    Ended,
}

/// One publishing session, publisher side. See the module docs.
#[derive(Debug)]
pub struct Publication {
    link: u64,
    name: String,
    token: Vec<u8>,
    state: State,
    next_seq: u64,
    window: usize,
    /// Shared with the frames that carry them (a resend copies nothing).
    unacked: VecDeque<(u64, Bytes)>,
    /// How many of `unacked` (from the front) went out on this connection;
    /// those after it, within the window, wait to be polled.
    in_flight: usize,
    out: VecDeque<ChannelFrame>,
    events: VecDeque<PubEvent>,
}

impl Publication {
    /// A session on `name` on link `link`, presenting `token` (empty:
    /// none). Its advertise frame is the first to transmit.
    pub fn new(link: u64, name: &str, token: Vec<u8>) -> Self {
        let mut this = Self {
            link,
            name: name.into(),
            token,
            state: State::Opening,
            next_seq: 1,
            window: OPENING_WINDOW,
            unacked: VecDeque::new(),
            in_flight: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        this.advertise();
        this
    }

    fn advertise(&mut self) {
        let next_seq = self.unacked.front().map_or(self.next_seq, |(s, _)| *s);
        self.out.push_back(ChannelFrame::Advertise {
            link: self.link,
            name: self.name.clone(),
            token: self.token.clone(),
            next_seq,
        });
    }

    /// The link number.
    pub fn link(&self) -> u64 {
        self.link
    }

    /// Whether the session is over.
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Messages not acknowledged yet.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Whether a publish would be taken now.
    pub fn can_publish(&self) -> bool {
        self.state != State::Ended && self.unacked.len() < self.window
    }

    /// Queues `data` as the next message; returns its sequence number.
    pub fn try_publish(&mut self, data: impl Into<Bytes>) -> Result<u64, PublishRefused> {
        let data = data.into();
        if self.state == State::Ended {
            return Err(PublishRefused::Ended);
        }
        if data.len() > MAX_DATA {
            return Err(PublishRefused::TooLarge);
        }
        if self.unacked.len() >= self.window {
            return Err(PublishRefused::WouldBlock);
        }
        // The owner's `last_seq` (a peer's word) may have pushed the next
        // number to the end of the space: nothing is left to publish with.
        if self.next_seq == u64::MAX {
            return Err(PublishRefused::Ended);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.push_back((seq, data));
        Ok(seq)
    }

    /// Whether a message the window lets out waits to be polled.
    pub fn has_publish(&self) -> bool {
        self.state == State::Live && self.in_flight < self.unacked.len().min(self.window)
    }

    /// The next message the window lets out, (seq, data), without its
    /// frame.
    pub fn poll_publish(&mut self) -> Option<(u64, Bytes)> {
        if !self.has_publish() {
            return None;
        }
        let next = self.unacked.get(self.in_flight).cloned();
        self.in_flight += 1;
        next
    }

    /// The next frame to send to the owner: the messages the window lets
    /// out first, each a `Publish`, then the session's other frames.
    pub fn poll_transmit(&mut self) -> Option<ChannelFrame> {
        match self.poll_publish() {
            Some((seq, data)) => Some(ChannelFrame::Publish {
                link: self.link,
                seq,
                data,
            }),
            None => self.poll_control(),
        }
    }

    /// The next frame to send to the owner that is not a publish (see
    /// [`Self::poll_publish`] for those).
    pub fn poll_control(&mut self) -> Option<ChannelFrame> {
        self.out.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<PubEvent> {
        self.events.pop_front()
    }

    /// A frame from the owner for this link.
    pub fn handle_frame(&mut self, frame: ChannelFrame) {
        if self.state == State::Ended {
            return;
        }
        match frame {
            ChannelFrame::Accepted {
                credit, last_seq, ..
            } => {
                self.state = State::Live;
                self.window = (credit as usize).max(1);
                self.in_flight = 0;
                // Taken before the reconnect; their counts are not known.
                if let Some((from, seq)) = self.pop_acked(last_seq) {
                    self.events.push_back(PubEvent::Ack {
                        from,
                        seq,
                        delivered: 0,
                        targets: 0,
                    });
                }
                self.next_seq = self.next_seq.max(last_seq.saturating_add(1));
                self.events.push_back(PubEvent::Accepted);
            }
            ChannelFrame::PublishAck {
                seq,
                delivered,
                targets,
                ..
            } => {
                // Cumulative: every message up to `seq` not acknowledged
                // before, each with these counts.
                let popped = self.unacked.len();
                if let Some((from, seq)) = self.pop_acked(seq) {
                    let popped = popped - self.unacked.len();
                    self.in_flight = self.in_flight.saturating_sub(popped);
                    self.events.push_back(PubEvent::Ack {
                        from,
                        seq,
                        delivered,
                        targets,
                    });
                }
            }
            ChannelFrame::Denied { reason, .. } => {
                self.state = State::Ended;
                self.events.push_back(PubEvent::Denied(reason));
            }
            ChannelFrame::End { reason, .. } => {
                self.state = State::Ended;
                self.events.push_back(PubEvent::Ended(reason));
            }
            _ => {}
        }
    }

    /// Drops the unacknowledged messages up to `seq`; returns the first
    /// and last sequence numbers dropped, if any.
    fn pop_acked(&mut self, seq: u64) -> Option<(u64, u64)> {
        let from = self
            .unacked
            .front()
            .map(|(s, _)| *s)
            .filter(|s| *s <= seq)?;
        let mut last = from;
        while let Some(&(s, _)) = self.unacked.front().filter(|(s, _)| *s <= seq) {
            last = s;
            self.unacked.pop_front();
        }
        Some((from, last))
    }

    /// The connection to the owner is gone.
    pub fn handle_disconnect(&mut self) {
        if self.state != State::Ended {
            self.state = State::Disconnected;
            self.in_flight = 0;
        }
    }

    /// Connected again: reopen; unacknowledged messages go again once
    /// accepted.
    pub fn handle_reconnect(&mut self) {
        if self.state == State::Disconnected {
            self.state = State::Opening;
            self.advertise();
        }
    }

    /// Presents a fresh token on the live session.
    pub fn refresh(&mut self, token: Vec<u8>) {
        self.token = token.clone();
        self.out.push_back(ChannelFrame::TokenRefresh {
            link: self.link,
            token,
        });
    }

    /// Ends the session.
    pub fn close(&mut self) {
        if self.state != State::Ended {
            self.out
                .push_back(ChannelFrame::Unsubscribe { link: self.link });
        }
    }
}
