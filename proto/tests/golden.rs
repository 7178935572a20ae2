//! Golden bytes: the wire encoding of every message in `relay_proto::wire`
//! and the join ticket's text form, pinned byte for byte.
//!
//! Each test builds one message variant from fixed inputs and compares its
//! encoding with the expected bytes, written out field by field; then it
//! decodes those bytes and expects the same message back. Reordering an enum,
//! changing a field's type or order, or a new serializer therefore fails
//! here instead of silently changing what goes on the wire.
//!
//! New variants belong at the end of their enum (they get the next index);
//! the bytes below must never change. A test that needs to change means the
//! wire changed: that needs a new protocol version, not a new golden value.
//!
//! postcard, which encodes the control and traversal messages, writes an
//! enum variant as its index (varint), integers wider than a byte as LEB128
//! varints, `u8` and fixed arrays as raw bytes, a `Vec` as a varint length
//! and its items, an `Option` as `00` or `01` and the value, and a
//! `SocketAddr` as `00` + 4 IPv4 bytes or `01` + 16 IPv6 bytes, then the
//! port as a varint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use relay_proto::wire::control::{
    ControlMsg, GoneReason, RefuseReason, RelayLimitsMsg, DATAGRAM_APP, DATAGRAM_CONTROL,
};
use relay_proto::wire::natpmp::{self, NatPmpBody, NatPmpRequest, NatPmpResponse, NatPmpResult};
use relay_proto::wire::pcp::{self, MapRequest, MapResponse, PcpResponse, PcpResult};
use relay_proto::wire::probe::{
    ProbeFrame, ProbeKind, FLAG_BINDING, FLAG_KEEPALIVE, FLAG_NOMINATE, PROBE_LEN,
};
use relay_proto::wire::relay::{emit_header, RelayFrame, RelayFrameKind};
use relay_proto::wire::traversal::{Introduction, NatType, RejectReason, TraversalMsg};
use relay_proto::{NodeId, SecretKey};

/// NodeId of the secret key `[1; 32]`.
const ID1: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
/// NodeId of the secret key `[2; 32]`.
const ID2: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";

fn id(n: u8) -> NodeId {
    SecretKey::from_bytes(&[n; 32]).node_id()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The expected bytes, from segments written field by field.
fn wire(parts: &[&str]) -> String {
    parts.concat()
}

#[test]
fn fixed_node_ids() {
    assert_eq!(hex(id(1).as_bytes()), ID1);
    assert_eq!(hex(id(2).as_bytes()), ID2);
}

// ---------------------------------------------------------------- control

/// A control message encodes to `want`, as a datagram to `00` + `want`,
/// and `want` decodes to the message.
fn control(msg: ControlMsg, want: &str) {
    assert_eq!(hex(&msg.encode().unwrap()), want, "{msg:?}");
    assert_eq!(
        hex(&msg.encode_datagram().unwrap()),
        format!("00{want}"),
        "{msg:?}"
    );
    assert_eq!(ControlMsg::decode(&unhex(want)), Ok(msg));
}

fn limits() -> RelayLimitsMsg {
    RelayLimitsMsg {
        rate_bytes_per_sec: 8 << 20,
        burst_bytes: 1 << 20,
        queue_packets: 256,
        queue_bytes: 512 << 10,
        max_packet: 1439,
    }
}

/// [`limits`] on the wire.
const LIMITS: &str = concat!(
    "80808004", // rate_bytes_per_sec 8388608
    "808040",   // burst_bytes 1048576
    "8002",     // queue_packets 256
    "808020",   // queue_bytes 524288
    "9f0b",     // max_packet 1439
);

#[test]
fn datagram_prefixes() {
    assert_eq!(DATAGRAM_CONTROL, 0x00);
    assert_eq!(DATAGRAM_APP, 0x01);
}

#[test]
fn control_observed_addr_v4() {
    control(
        ControlMsg::ObservedAddr {
            addr: addr("203.0.113.7:4242"),
        },
        &wire(&["00", "00", "cb007107", "9221"]),
    );
}

#[test]
fn control_observed_addr_v6() {
    control(
        ControlMsg::ObservedAddr {
            addr: addr("[2001:db8::1]:9"),
        },
        &wire(&["00", "01", "20010db8000000000000000000000001", "09"]),
    );
}

#[test]
fn control_relay_offer() {
    control(
        ControlMsg::RelayOffer { limits: limits() },
        &wire(&["01", LIMITS]),
    );
}

#[test]
fn control_relay_register() {
    control(ControlMsg::RelayRegister, "02");
}

#[test]
fn control_relay_registered() {
    control(
        ControlMsg::RelayRegistered { limits: limits() },
        &wire(&["03", LIMITS]),
    );
}

#[test]
fn control_relay_refused_every_reason() {
    for (reason, byte) in [
        (RefuseReason::Disabled, "00"),
        (RefuseReason::Full, "01"),
        (RefuseReason::NoDirectPath, "02"),
    ] {
        control(ControlMsg::RelayRefused { reason }, &wire(&["04", byte]));
    }
}

#[test]
fn control_peer_gone_every_reason() {
    for (reason, byte) in [(GoneReason::Left, "00"), (GoneReason::Unknown, "01")] {
        control(
            ControlMsg::PeerGone {
                node_id: id(1),
                reason,
            },
            &wire(&["05", ID1, byte]),
        );
    }
}

#[test]
fn control_traversal_wraps_the_traversal_encoding() {
    control(
        ControlMsg::Traversal(TraversalMsg::NatInfo {
            nat: NatType::Symmetric,
        }),
        &wire(&["06", "00", "03"]),
    );
}

// -------------------------------------------------------------- traversal

/// A traversal message encodes to `want` on its own and to `06` + `want`
/// inside a control message; `want` decodes to the message.
fn traversal(msg: TraversalMsg, want: &str) {
    assert_eq!(hex(&msg.encode().unwrap()), want, "{msg:?}");
    assert_eq!(TraversalMsg::decode(&unhex(want)), Ok(msg.clone()));
    let wrapped = ControlMsg::Traversal(msg);
    assert_eq!(hex(&wrapped.encode().unwrap()), format!("06{want}"));
}

#[test]
fn traversal_nat_info_every_type() {
    for (nat, byte) in [
        (NatType::Unknown, "00"),
        (NatType::Open, "01"),
        (NatType::Cone, "02"),
        (NatType::Symmetric, "03"),
    ] {
        traversal(TraversalMsg::NatInfo { nat }, &wire(&["00", byte]));
    }
}

#[test]
fn traversal_reach_request() {
    traversal(
        TraversalMsg::ReachRequest {
            req: 300,
            target: id(2),
        },
        &wire(&["01", "ac02", ID2]),
    );
    traversal(
        TraversalMsg::ReachRequest {
            req: u64::MAX,
            target: id(1),
        },
        &wire(&["01", "ffffffffffffffffff01", ID1]),
    );
}

#[test]
fn traversal_introduce() {
    traversal(
        TraversalMsg::Introduce(Introduction {
            req: 7,
            requester: id(1),
            peer: id(2),
            candidates: vec![addr("198.51.100.2:40000"), addr("[2001:db8::2]:7420")],
            peer_nat: NatType::Cone,
            fire_in_ms: 150,
        }),
        &wire(&[
            "02",
            "07", // req
            ID1,  // requester
            ID2,  // peer
            "02", // two candidates
            "00",
            "c6336402",
            "c0b802", // 198.51.100.2:40000
            "01",
            "20010db8000000000000000000000002",
            "fc39", // [2001:db8::2]:7420
            "02",   // peer_nat cone
            "9601", // fire_in_ms 150
        ]),
    );
    traversal(
        TraversalMsg::Introduce(Introduction {
            req: 0,
            requester: id(2),
            peer: id(1),
            candidates: Vec::new(),
            peer_nat: NatType::Unknown,
            fire_in_ms: 0,
        }),
        &wire(&["02", "00", ID2, ID1, "00", "00", "00"]),
    );
}

#[test]
fn traversal_rejected_every_reason() {
    for (reason, byte) in [
        (RejectReason::Budget, "00"),
        (RejectReason::NotConnected, "01"),
        (RejectReason::NoObservedAddr, "02"),
        (RejectReason::Disabled, "03"),
    ] {
        traversal(
            TraversalMsg::Rejected {
                req: 1,
                target: id(2),
                reason,
            },
            &wire(&["03", "01", ID2, byte]),
        );
    }
}

#[test]
fn traversal_port_mapped() {
    traversal(
        TraversalMsg::PortMapped {
            addr: Some(addr("198.51.101.10:7420")),
        },
        &wire(&["04", "01", "00", "c633650a", "fc39"]),
    );
    traversal(TraversalMsg::PortMapped { addr: None }, "0400");
}

#[test]
fn traversal_binding_check() {
    traversal(
        TraversalMsg::BindingCheck {
            tx: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            addr: addr("198.51.101.10:40001"),
        },
        &wire(&[
            "05",
            "000102030405060708090a0b", // tx
            "00",
            "c633650a",
            "c1b802", // 198.51.101.10:40001
        ]),
    );
    traversal(
        TraversalMsg::BindingCheck {
            tx: [0xff; 12],
            addr: addr("[2001:db8::1]:9"),
        },
        &wire(&[
            "05",
            "ffffffffffffffffffffffff",
            "01",
            "20010db8000000000000000000000001",
            "09",
        ]),
    );
}

// ------------------------------------------------------------------ relay

#[test]
fn relay_send_and_recv_frames() {
    let packet = [0x40, 0xde, 0xad];
    let tag = [0x5a; 16];
    for (kind, byte) in [(RelayFrameKind::Send, "01"), (RelayFrameKind::Recv, "02")] {
        let want = wire(&[
            byte,
            ID1,
            "0102030405060708",                 // seq, u64 BE
            "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a", // tag
            "40dead",                           // inner QUIC packet
        ]);
        let frame = RelayFrame::new(kind, &id(1), &packet).with_auth(0x0102_0304_0506_0708, tag);
        let mut out = Vec::new();
        frame.emit_to_vec(&mut out).unwrap();
        assert_eq!(hex(&out), want);
        let mut buf = [0u8; 96];
        let n = frame.emit(&mut buf).unwrap();
        assert_eq!(hex(&buf[..n]), want);
        let mut header = Vec::new();
        emit_header(kind, id(1).as_bytes(), 0x0102_0304_0506_0708, &mut header);
        assert_eq!(
            hex(&header),
            wire(&[
                byte,
                ID1,
                "0102030405060708",
                "00000000000000000000000000000000"
            ])
        );
        let bytes = unhex(&want);
        assert_eq!(RelayFrame::parse(&bytes), Ok(frame));
    }
}

// ------------------------------------------------------------------ probe

fn probe(frame: ProbeFrame, want: &str) {
    let bytes = frame.to_bytes().unwrap();
    assert_eq!(bytes.len(), PROBE_LEN);
    assert_eq!(hex(&bytes), want, "{frame:?}");
    assert_eq!(ProbeFrame::parse(&unhex(want)), Ok(frame));
}

#[test]
fn probe_flag_bits() {
    assert_eq!(
        (FLAG_NOMINATE, FLAG_KEEPALIVE, FLAG_BINDING),
        (0x01, 0x02, 0x04)
    );
}

#[test]
fn probe_v4() {
    probe(
        ProbeFrame {
            kind: ProbeKind::Probe,
            flags: FLAG_NOMINATE,
            tx: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            sender: *id(1).as_bytes(),
            addr: addr("198.51.100.2:40000"),
            tag: [0xaa; 16],
        },
        &wire(&[
            "10",                               // probe
            "01",                               // flags: nominate
            "000102030405060708090a0b",         // tx
            ID1,                                // sender
            "04",                               // IPv4
            "c6336402000000000000000000000000", // ip, zero padded
            "9c40",                             // port 40000, big-endian
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", // tag
        ]),
    );
}

#[test]
fn probe_reply_v6() {
    probe(
        ProbeFrame {
            kind: ProbeKind::Reply,
            flags: FLAG_KEEPALIVE | FLAG_BINDING,
            tx: [0xff; 12],
            sender: *id(2).as_bytes(),
            addr: addr("[2001:db8::2]:7420"),
            tag: [0x55; 16],
        },
        &wire(&[
            "11",
            "06",
            "ffffffffffffffffffffffff",
            ID2,
            "06",
            "20010db8000000000000000000000002",
            "1cfc",
            "55555555555555555555555555555555",
        ]),
    );
}

// ---------------------------------------------------------------- NAT-PMP

#[test]
fn natpmp_requests() {
    assert_eq!(hex(&natpmp::external_address_request()), "0000");
    let map = natpmp::map_udp_request(40000, 40001, 7200);
    assert_eq!(
        hex(&map),
        wire(&["00", "01", "0000", "9c40", "9c41", "00001c20"])
    );
    assert_eq!(
        NatPmpRequest::parse(&map),
        Some(NatPmpRequest::MapUdp {
            internal: 40000,
            external: 40001,
            lifetime: 7200
        })
    );
    assert_eq!(
        NatPmpRequest::parse(&natpmp::external_address_request()),
        Some(NatPmpRequest::ExternalAddress)
    );
}

fn natpmp_response(response: NatPmpResponse, want: &str) {
    assert_eq!(hex(&response.emit()), want, "{response:?}");
    assert_eq!(NatPmpResponse::parse(&unhex(want)), Ok(response));
}

#[test]
fn natpmp_external_address_response() {
    natpmp_response(
        NatPmpResponse {
            result: NatPmpResult::Success,
            epoch: 1000,
            body: NatPmpBody::ExternalAddress {
                ip: "198.51.101.10".parse().unwrap(),
            },
        },
        &wire(&["00", "80", "0000", "000003e8", "c633650a"]),
    );
}

#[test]
fn natpmp_map_udp_response() {
    natpmp_response(
        NatPmpResponse {
            result: NatPmpResult::Success,
            epoch: 1000,
            body: NatPmpBody::MapUdp {
                internal: 40000,
                external: 50000,
                lifetime: 7200,
            },
        },
        &wire(&["00", "81", "0000", "000003e8", "9c40", "c350", "00001c20"]),
    );
}

#[test]
fn natpmp_failed_response() {
    natpmp_response(
        NatPmpResponse {
            result: NatPmpResult::NotAuthorized,
            epoch: 5,
            body: NatPmpBody::Failed { opcode: 1 },
        },
        &wire(&["00", "81", "0002", "00000005"]),
    );
}

#[test]
fn natpmp_result_codes() {
    for (result, code) in [
        (NatPmpResult::Success, 0),
        (NatPmpResult::UnsupportedVersion, 1),
        (NatPmpResult::NotAuthorized, 2),
        (NatPmpResult::NetworkFailure, 3),
        (NatPmpResult::OutOfResources, 4),
        (NatPmpResult::UnsupportedOpcode, 5),
        (NatPmpResult::Other(77), 77),
    ] {
        assert_eq!(result.code(), code);
        assert_eq!(NatPmpResult::from_code(code), result);
    }
}

// -------------------------------------------------------------------- PCP

/// `::ffff:10.1.0.2`, a client address as PCP carries it.
const CLIENT: &str = "00000000000000000000ffff0a010002";

#[test]
fn pcp_announce_request() {
    let req = pcp::announce_request("10.1.0.2".parse().unwrap());
    assert_eq!(hex(&req), wire(&["02", "00", "0000", "00000000", CLIENT]));
}

#[test]
fn pcp_map_request() {
    let req = MapRequest {
        lifetime: 7200,
        client: "10.1.0.2".parse().unwrap(),
        nonce: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        internal_port: 40000,
        external_port: 0,
        external_ip: pcp::any_v4(),
    };
    let want = wire(&[
        "02",                               // version
        "01",                               // MAP
        "0000",                             // reserved
        "00001c20",                         // lifetime 7200
        CLIENT,                             // client ip
        "000102030405060708090a0b",         // nonce
        "11",                               // UDP
        "000000",                           // reserved
        "9c40",                             // internal port
        "0000",                             // suggested external port: any
        "00000000000000000000ffff00000000", // suggested external ip: any IPv4
    ]);
    assert_eq!(hex(&req.emit()), want);
    assert_eq!(MapRequest::parse(&unhex(&want)), Some(req));
}

fn pcp_response(response: PcpResponse, want: &str) {
    assert_eq!(hex(&response.emit()), want, "{response:?}");
    assert_eq!(PcpResponse::parse(&unhex(want)), Ok(response));
}

#[test]
fn pcp_map_response() {
    pcp_response(
        PcpResponse {
            opcode: pcp::OP_MAP,
            result: PcpResult::Success,
            lifetime: 7200,
            epoch: 1000,
            map: Some(MapResponse {
                nonce: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                protocol: pcp::PROTO_UDP,
                internal_port: 40000,
                external_port: 50000,
                external_ip: "198.51.101.10".parse().unwrap(),
            }),
        },
        &wire(&[
            "02",                               // version
            "81",                               // MAP response
            "00",                               // reserved
            "00",                               // result: success
            "00001c20",                         // lifetime
            "000003e8",                         // epoch
            "000000000000000000000000",         // reserved
            "000102030405060708090a0b",         // nonce
            "11",                               // UDP
            "000000",                           // reserved
            "9c40",                             // internal port
            "c350",                             // external port
            "00000000000000000000ffffc633650a", // external ip
        ]),
    );
}

#[test]
fn pcp_error_and_announce_responses() {
    pcp_response(
        PcpResponse {
            opcode: pcp::OP_MAP,
            result: PcpResult::NotAuthorized,
            lifetime: 30,
            epoch: 1,
            map: None,
        },
        &wire(&[
            "02",
            "81",
            "00",
            "02",
            "0000001e",
            "00000001",
            "000000000000000000000000",
        ]),
    );
    pcp_response(
        PcpResponse {
            opcode: pcp::OP_ANNOUNCE,
            result: PcpResult::Success,
            lifetime: 0,
            epoch: 2,
            map: None,
        },
        &wire(&[
            "02",
            "80",
            "00",
            "00",
            "00000000",
            "00000002",
            "000000000000000000000000",
        ]),
    );
}

#[test]
fn pcp_result_codes() {
    let all = [
        PcpResult::Success,
        PcpResult::UnsupportedVersion,
        PcpResult::NotAuthorized,
        PcpResult::MalformedRequest,
        PcpResult::UnsupportedOpcode,
        PcpResult::UnsupportedOption,
        PcpResult::MalformedOption,
        PcpResult::NetworkFailure,
        PcpResult::NoResources,
        PcpResult::UnsupportedProtocol,
        PcpResult::UserExceededQuota,
        PcpResult::CannotProvideExternal,
        PcpResult::AddressMismatch,
        PcpResult::ExcessiveRemotePeers,
    ];
    for (code, result) in all.into_iter().enumerate() {
        let code = u8::try_from(code).unwrap();
        assert_eq!(result.code(), code, "{result:?}");
        assert_eq!(PcpResult::from_code(code), result);
    }
    assert_eq!(PcpResult::Other(200).code(), 200);
}

// ----------------------------------------------------------------- ticket

#[test]
fn join_ticket_text_form() {
    let ticket = relay_proto::Ticket {
        node_id: id(1),
        addrs: vec![addr("192.0.2.10:7420"), addr("[2001:db8::1]:7420")],
        network_key: relay_proto::NetworkKey::from_bytes([7; 32]),
    };
    let payload = wire(&[
        "01", // version
        ID1,  // node_id
        "02", // two addresses
        "00",
        "c000020a",
        "fc39", // 192.0.2.10:7420
        "01",
        "20010db8000000000000000000000001",
        "fc39", // [2001:db8::1]:7420
        "0707070707070707070707070707070707070707070707070707070707070707", // network key
    ]);
    let text = ticket.encode();
    let bytes = relay_proto::base32_decode(text.strip_prefix("rnt1").unwrap()).unwrap();
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    assert_eq!(hex(body), payload);
    assert_eq!(
        hex(crc),
        "a668a4a1",
        "CRC-32 (ISO-HDLC) of the payload, big-endian"
    );
    // The whole text, as another implementation would produce it.
    let want = concat!(
        "rnt1agfiry65oqe7dfp5klns2pf2lvzmuzyjx4ozieq36n2iqanub5xvyaqayaaaecx4",
        "heasaainxaaaaaaaaaaaaaaaaaaad7bza4dqobyha4dqobyha4dqobyha4dqobyha4dq",
        "obyha4dqobyha4d2m2feue",
    );
    assert_eq!(text, want);
    assert!(relay_proto::Ticket::decode(want).unwrap() == ticket);
}

// ---------------------------------------------------------------- tokens

#[test]
fn token_chain_binary_form() {
    use relay_proto::token::{
        ChannelPattern, Scope, Scopes, TokenChain, TokenClaims, TokenId, TOKEN_CONTEXT,
    };
    let claims = TokenClaims {
        issuer: id(1),
        subject: id(2),
        scopes: Scopes::of(&[Scope::Publish, Scope::Delegate]),
        channel: ChannelPattern::parse("a/>").unwrap(),
        not_before: 1000,
        expires: 2000,
        delegation_depth: 1,
        id: TokenId::from_bytes([7; 16]),
        parent: TokenId::NONE,
    };
    let fields = wire(&[
        ID1,
        ID2,
        "05",                               // scopes: publish | delegate
        "0003612f3e",                       // channel "a/>"
        "00000000000003e8",                 // not_before 1000
        "00000000000007d0",                 // expires 2000
        "01",                               // delegation_depth 1
        "07070707070707070707070707070707", // id
        "00000000000000000000000000000000", // parent: none
    ]);
    let signed = claims.canonical().unwrap();
    assert_eq!(
        hex(signed.as_bytes()),
        format!("{}00{fields}", hex(TOKEN_CONTEXT.as_str().as_bytes()))
    );
    assert_eq!(TOKEN_CONTEXT.as_str(), "relay-node/v1/token");
    let token = claims.sign(&SecretKey::from_bytes(&[1; 32])).unwrap();
    let chain = TokenChain::new(vec![token]).unwrap();
    let want = wire(&["01", "01", &fields, TOKEN_SIGNATURE]);
    assert_eq!(hex(&chain.encode()), want);
    assert_eq!(TokenChain::decode(&unhex(&want)), Ok(chain.clone()));
    let text = chain.to_text();
    assert!(text.starts_with("rnk1"));
    assert_eq!(text.parse::<TokenChain>(), Ok(chain));
}

/// ed25519 (deterministic) by the key `[1; 32]` over the claims above.
const TOKEN_SIGNATURE: &str = concat!(
    "ba346a16051cafa2a32534801e24476ae8dd9a92e99661d00481756173fa6851",
    "17c9bcfe3128ca72b593cd32268926811acdda4ddd63187363f0f85fa8763001",
);
