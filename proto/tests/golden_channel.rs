//! Golden bytes of the channel frames (`relay_proto::wire::channel`), pinned
//! byte for byte, in the manner of `golden.rs`: each test builds one frame
//! from fixed inputs, compares its encoding with the expected bytes written
//! field by field, and decodes those bytes back to the same frame.
//!
//! postcard writes an enum variant as its index (varint), integers wider
//! than a byte as LEB128 varints, a `String` or `Vec<u8>` as a varint
//! length and the bytes, an `Option` as `00` or `01` and the value, a
//! `bool` as `00` or `01`, and a NodeId as its 32 raw bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relay_proto::wire::channel::{Backpressure, ChannelFrame, Cursor, Reason, Start, TokenKind};
use relay_proto::{NodeId, SecretKey};

/// NodeId of the secret key `[1; 32]`.
const ID1: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";

fn id1() -> NodeId {
    SecretKey::from_bytes(&[1; 32]).node_id()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `frame` encodes to the concatenation of `parts`, which decodes back.
fn golden(frame: ChannelFrame, parts: &[&str]) {
    let want = parts.concat();
    assert_eq!(hex(&frame.encode().unwrap()), want, "{frame:?}");
    assert_eq!(ChannelFrame::decode(&unhex(&want)).unwrap(), frame);
}

#[test]
fn subscribe_every_start() {
    let sub = |start| ChannelFrame::Subscribe {
        link: 300,
        name: "a/b".into(),
        token: vec![0xee],
        queue: Some("g".into()),
        start,
        credit: 128,
        backpressure: Backpressure::DropNewest,
    };
    // variant 0, link 300 (ac 02), name, token, Some("g"), start, credit 128
    // (80 01), drop-newest (02)
    let head = ["00", "ac02", "03612f62", "01ee", "010167"];
    golden(sub(Start::Live), &[&head.concat(), "00", "8001", "02"]);
    golden(sub(Start::FromStart), &[&head.concat(), "01", "8001", "02"]);
    golden(sub(Start::Last(5)), &[&head.concat(), "0205", "8001", "02"]);
    golden(
        sub(Start::After(vec![Cursor {
            publisher: id1(),
            seq: 7,
        }])),
        &[&head.concat(), "03", "01", ID1, "07", "8001", "02"],
    );
    golden(
        ChannelFrame::Subscribe {
            link: 1,
            name: "x".into(),
            token: vec![],
            queue: None,
            start: Start::Live,
            credit: 0,
            backpressure: Backpressure::Block,
        },
        &["00", "01", "0178", "00", "00", "00", "00", "00"],
    );
}

#[test]
fn advertise_accepted_denied() {
    golden(
        ChannelFrame::Advertise {
            link: 2,
            name: "x".into(),
            token: vec![],
            next_seq: 1,
        },
        &["01", "02", "0178", "00", "01"],
    );
    golden(
        ChannelFrame::Accepted {
            link: 2,
            reliable: true,
            credit: 256,
            last_seq: 0,
        },
        &["02", "02", "01", "8002", "00"],
    );
    golden(
        ChannelFrame::Denied {
            link: 2,
            reason: Reason::Token(TokenKind::Required),
        },
        &["03", "02", "00", "0a"],
    );
}

#[test]
fn every_reason() {
    let reasons = [
        (Reason::Token(TokenKind::InvalidSignature), "0000"),
        (Reason::Token(TokenKind::Expired), "0001"),
        (Reason::Token(TokenKind::NotYetValid), "0002"),
        (Reason::Token(TokenKind::DelegationExhausted), "0003"),
        (Reason::Token(TokenKind::Scope), "0004"),
        (Reason::Token(TokenKind::ChannelMismatch), "0005"),
        (Reason::Token(TokenKind::Revoked), "0006"),
        (Reason::Token(TokenKind::Malformed), "0007"),
        (Reason::Token(TokenKind::WrongSubject), "0008"),
        (Reason::Token(TokenKind::ChainTooLong), "0009"),
        (Reason::Token(TokenKind::Required), "000a"),
        (Reason::NoSuchChannel, "01"),
        (Reason::Throttled, "02"),
        (Reason::TooMany, "03"),
        (Reason::Duplicate, "04"),
        (Reason::Removed, "05"),
        (Reason::Closed, "06"),
        (Reason::Shutdown, "07"),
        (Reason::Protocol, "08"),
    ];
    for (reason, bytes) in reasons {
        golden(ChannelFrame::End { link: 9, reason }, &["0b", "09", bytes]);
    }
}

#[test]
fn every_backpressure_mode() {
    for (backpressure, byte) in [
        (Backpressure::Block, "00"),
        (Backpressure::DropOldest, "01"),
        (Backpressure::DropNewest, "02"),
    ] {
        golden(
            ChannelFrame::Subscribe {
                link: 1,
                name: "x".into(),
                token: vec![],
                queue: None,
                start: Start::Live,
                credit: 0,
                backpressure,
            },
            &["00", "01", "0178", "00", "00", "00", "00", byte],
        );
    }
}

#[test]
fn data_path_frames() {
    golden(
        ChannelFrame::Publish {
            link: 2,
            seq: 1,
            data: b"hi".to_vec().into(),
        },
        &["04", "02", "01", "026869"],
    );
    golden(
        ChannelFrame::PublishAck {
            link: 2,
            seq: 1,
            delivered: 2,
            targets: 3,
        },
        &["05", "02", "01", "02", "03"],
    );
    golden(
        ChannelFrame::Deliver {
            link: 1,
            publisher: id1(),
            seq: 5,
            ts: 1000,
            data: b"hi".to_vec().into(),
        },
        &["06", "01", ID1, "05", "e807", "026869"],
    );
    golden(
        ChannelFrame::Gap {
            link: 1,
            publisher: id1(),
            from: 3,
            to: 4,
        },
        &["07", "01", ID1, "03", "04"],
    );
    // variant 12 (added last), link, publisher, first seq, ts, then the
    // payloads: their count, each as a byte string.
    golden(
        ChannelFrame::DeliverBatch {
            link: 1,
            publisher: id1(),
            seq: 5,
            ts: 1000,
            data: vec![b"hi".to_vec().into(), b"!".to_vec().into()],
        },
        &["0c", "01", ID1, "05", "e807", "02", "026869", "0121"],
    );
}

#[test]
fn control_frames() {
    golden(ChannelFrame::Credit { link: 1, n: 64 }, &["08", "01", "40"]);
    golden(
        ChannelFrame::TokenRefresh {
            link: 1,
            token: vec![1, 2],
        },
        &["09", "01", "020102"],
    );
    golden(ChannelFrame::Unsubscribe { link: 1 }, &["0a", "01"]);
}
