//! Opening streams to a NodeId: on the live connection when there is one,
//! else after dialing it (through [`crate::Transport::connect_best`]: a
//! relay that serves us, or the address the mux knows for the peer).
//! Every stream starts with the protocol id.

use bytes::Bytes;
use relay_proto::NodeId;

use super::addrs::AddrBook;
use super::error::OpenError;
use super::id::{ProtocolId, HEADER_LEN};
use crate::{DialErrorKind, RecvStream, SendStream, StreamError, Transport};

/// Opens a bidirectional stream of protocol `id` to `peer` and writes the
/// id and `first` (possibly empty) in one write.
pub(crate) async fn open_bi(
    transport: &Transport,
    addrs: &AddrBook,
    peer: NodeId,
    id: ProtocolId,
    first: &[u8],
) -> Result<(SendStream, RecvStream), OpenError> {
    let mut buf = Vec::with_capacity(HEADER_LEN + first.len());
    buf.extend_from_slice(&[0; HEADER_LEN]);
    buf.extend_from_slice(first);
    open_bi_owned(transport, addrs, peer, id, buf).await
}

/// Opens a bidirectional stream of protocol `id` to `peer` and writes
/// `request` whose first [`HEADER_LEN`] bytes are room for the id: the id
/// is put there and the whole buffer handed to quinn without a copy (one
/// write, so the id and the request share a segment and, usually, the
/// packet that opens the stream). A buffer shorter than the room gets the
/// id in front instead.
pub(crate) async fn open_bi_owned(
    transport: &Transport,
    addrs: &AddrBook,
    peer: NodeId,
    id: ProtocolId,
    mut request: Vec<u8>,
) -> Result<(SendStream, RecvStream), OpenError> {
    check_peer(transport, peer)?;
    let (mut send, recv) = match transport.open_bi(peer).await {
        Err(StreamError::NotConnected(_)) => {
            dial(transport, addrs, peer).await?;
            transport.open_bi(peer).await?
        }
        other => other?,
    };
    match request.get_mut(..HEADER_LEN) {
        Some(room) => room.copy_from_slice(&id.to_header()),
        None => {
            let mut with_id = id.to_header().to_vec();
            with_id.extend_from_slice(&request);
            request = with_id;
        }
    }
    send.write_chunk(Bytes::from(request))
        .await
        .map_err(|e| OpenError::ConnectionLost(e.to_string()))?;
    Ok((send, recv))
}

/// Opens a unidirectional stream of protocol `id` to `peer`.
pub(crate) async fn open_uni(
    transport: &Transport,
    addrs: &AddrBook,
    peer: NodeId,
    id: ProtocolId,
) -> Result<SendStream, OpenError> {
    check_peer(transport, peer)?;
    let mut send = match transport.open_uni(peer).await {
        Err(StreamError::NotConnected(_)) => {
            dial(transport, addrs, peer).await?;
            transport.open_uni(peer).await?
        }
        other => other?,
    };
    write_id(&mut send, id).await?;
    Ok(send)
}

fn check_peer(transport: &Transport, peer: NodeId) -> Result<(), OpenError> {
    if peer == transport.node_id() {
        return Err(OpenError::SelfPeer(peer.to_string()));
    }
    Ok(())
}

/// Dials `peer`: through a relay, or at its known address.
async fn dial(transport: &Transport, addrs: &AddrBook, peer: NodeId) -> Result<(), OpenError> {
    match transport.connect_best(peer, addrs.get(&peer)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind == DialErrorKind::NoRelay => {
            Err(OpenError::NotConnected(peer.to_string()))
        }
        Err(e) => Err(OpenError::Dial(e)),
    }
}

async fn write_id(send: &mut SendStream, id: ProtocolId) -> Result<(), OpenError> {
    write_bytes(send, &id.to_header()).await
}

async fn write_bytes(send: &mut SendStream, bytes: &[u8]) -> Result<(), OpenError> {
    send.write_all(bytes)
        .await
        .map_err(|e| OpenError::ConnectionLost(e.to_string()))
}
