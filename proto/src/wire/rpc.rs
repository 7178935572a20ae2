//! nRPC call framing: what travels on one call's QUIC bidirectional stream
//! (after the mux's 2-byte protocol id, protocol 4), and the spec a
//! `service-registration` ledger entry carries. See docs/RPC.md.
//!
//! Every frame is a 5-byte head and a payload:
//!
//! ```text
//!  0      1                    5
//! +------+--------------------+----------------+
//! | type | payload length u32 | payload ...    |
//! +------+--------------------+----------------+
//! ```
//!
//! - [`FRAME_HEADER`] `0x01`: the caller's first frame, exactly once
//!   ([`CallHeader`]); at most [`MAX_HEADER_LEN`] bytes.
//! - [`FRAME_MESSAGE`] `0x02`: one body item, either direction; at most
//!   [`MAX_MESSAGE_LEN`] bytes (receivers may set a lower bound).
//! - [`FRAME_TRAILER`] `0x03`: the server's last frame ([`Trailer`]); at
//!   most [`MAX_TRAILER_LEN`] bytes.
//!
//! The caller finishes its send half after its last message; the server
//! finishes after the trailer. A caller that gives up resets its send half
//! and stops its receive half with [`RESET_CANCELLED`].
//!
//! Decoding is strict and total: one value has one encoding, bounds are
//! checked before anything is allocated, and every failure is a typed
//! [`RpcFrameError`].

use thiserror::Error;

/// Frame type of the call header.
pub const FRAME_HEADER: u8 = 0x01;
/// Frame type of a body message.
pub const FRAME_MESSAGE: u8 = 0x02;
/// Frame type of the trailer.
pub const FRAME_TRAILER: u8 = 0x03;
/// Length of a frame head (type and payload length).
pub const FRAME_HEAD_LEN: usize = 5;
/// Longest call header payload.
pub const MAX_HEADER_LEN: usize = 16 * 1024;
/// Longest message payload.
pub const MAX_MESSAGE_LEN: usize = 1024 * 1024;
/// Longest trailer payload.
pub const MAX_TRAILER_LEN: usize = 2 * 1024;
/// The call header version this codec speaks.
pub const VERSION: u8 = 1;
/// Longest service name.
pub const MAX_SERVICE: usize = 255;
/// Longest method name.
pub const MAX_METHOD: usize = 64;
/// Most metadata pairs in a call header.
pub const MAX_METADATA: usize = 16;
/// Longest metadata key.
pub const MAX_META_KEY: usize = 64;
/// Longest metadata value.
pub const MAX_META_VALUE: usize = 1024;
/// Longest status kind text.
pub const MAX_KIND: usize = 64;
/// Longest status detail text.
pub const MAX_DETAIL: usize = 1024;
/// Most methods a service spec lists.
pub const MAX_METHODS: usize = 64;
/// Longest service version string.
pub const MAX_SERVICE_VERSION: usize = 64;
/// Header flag: the call is idempotent (it may be retried or hedged after
/// the server may have seen it).
pub const FLAG_IDEMPOTENT: u8 = 0x01;
/// Trailer flag: a retry-after pushback follows.
pub const FLAG_RETRY_AFTER: u8 = 0x01;
/// Spec flag: callers must present a token.
pub const FLAG_TOKEN_REQUIRED: u8 = 0x01;
/// Stream reset / stop code: the caller cancelled (or dropped) the call.
pub const RESET_CANCELLED: u32 = 0x40;
/// Stream reset / stop code: the peer sent a malformed frame.
pub const RESET_PROTOCOL: u32 = 0x41;

/// A decode or encode failure. Displayed as `kind: detail`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RpcFrameError {
    /// An unknown frame type.
    #[error("bad-frame-type: unknown frame type {0:#04x}")]
    FrameType(u8),
    /// A payload over its bound.
    #[error("frame-too-long: {len} bytes, at most {max}")]
    TooLong {
        /// The length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The payload ended early.
    #[error("truncated: payload ends inside {0}")]
    Truncated(&'static str),
    /// Bytes after the last field.
    #[error("trailing-bytes: {0} bytes after the last field")]
    Trailing(usize),
    /// An unknown header version.
    #[error("bad-version: call header version {0}")]
    Version(u8),
    /// Flags this version does not know.
    #[error("bad-flags: unknown flag bits {0:#04x}")]
    Flags(u8),
    /// A text field that is empty, too long, not UTF-8 or has forbidden
    /// characters.
    #[error("bad-field: {0}")]
    Field(&'static str),
    /// An unknown status code.
    #[error("bad-code: unknown status code {0}")]
    Code(u8),
}

/// A status code: gRPC's canonical codes (0-16) and nRPC's own (17-25).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// Success.
    Ok,
    /// The call was cancelled.
    Cancelled,
    /// An unknown error.
    Unknown,
    /// The caller sent a bad argument.
    InvalidArgument,
    /// A deadline the handler reports itself.
    DeadlineExceeded,
    /// Something was not found.
    NotFound,
    /// Something already exists.
    AlreadyExists,
    /// The caller may not do this.
    PermissionDenied,
    /// Out of capacity (past the queue); carries a retry-after.
    ResourceExhausted,
    /// The system is not in a state for this.
    FailedPrecondition,
    /// Aborted (e.g. a conflict).
    Aborted,
    /// Out of range.
    OutOfRange,
    /// The service has no such method.
    Unimplemented,
    /// A bug.
    Internal,
    /// Temporarily unavailable.
    Unavailable,
    /// Data loss.
    DataLoss,
    /// The caller is not authenticated.
    Unauthenticated,
    /// No path to the chosen node.
    NoRoute,
    /// Nobody serves the service.
    NoResponders,
    /// The call's deadline expired.
    Timeout,
    /// The handler failed.
    ServerError,
    /// The stream or connection failed.
    Transport,
    /// A message could not be encoded.
    CodecEncode,
    /// A message could not be decoded.
    CodecDecode,
    /// The target's circuit breaker is open.
    BreakerOpen,
    /// The caller's token is revoked.
    Revoked,
}

impl Code {
    /// Every code, in wire order.
    pub const ALL: [Code; 26] = [
        Self::Ok,
        Self::Cancelled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
        Self::NoRoute,
        Self::NoResponders,
        Self::Timeout,
        Self::ServerError,
        Self::Transport,
        Self::CodecEncode,
        Self::CodecDecode,
        Self::BreakerOpen,
        Self::Revoked,
    ];

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The code of a wire value.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// The stable kind text (`ok`, `cancelled`, ..., `no-responders`).
    pub fn kind(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
            Self::InvalidArgument => "invalid-argument",
            Self::DeadlineExceeded => "deadline-exceeded",
            Self::NotFound => "not-found",
            Self::AlreadyExists => "already-exists",
            Self::PermissionDenied => "permission-denied",
            Self::ResourceExhausted => "resource-exhausted",
            Self::FailedPrecondition => "failed-precondition",
            Self::Aborted => "aborted",
            Self::OutOfRange => "out-of-range",
            Self::Unimplemented => "unimplemented",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::DataLoss => "data-loss",
            Self::Unauthenticated => "unauthenticated",
            Self::NoRoute => "no-route",
            Self::NoResponders => "no-responders",
            Self::Timeout => "timeout",
            Self::ServerError => "server-error",
            Self::Transport => "transport",
            Self::CodecEncode => "codec-encode",
            Self::CodecDecode => "codec-decode",
            Self::BreakerOpen => "breaker-open",
            Self::Revoked => "revoked",
        }
    }

    /// The code whose kind is `kind`.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.kind() == kind)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// A frame's type and payload length, checked against the type's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// [`FRAME_HEADER`], [`FRAME_MESSAGE`] or [`FRAME_TRAILER`].
    pub kind: u8,
    /// Payload length.
    pub len: usize,
}

impl FrameHead {
    /// Parses a head; `max_message` lowers [`MAX_MESSAGE_LEN`] for this
    /// receiver.
    pub fn parse(b: [u8; FRAME_HEAD_LEN], max_message: usize) -> Result<Self, RpcFrameError> {
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        let max = match b[0] {
            FRAME_HEADER => MAX_HEADER_LEN,
            FRAME_MESSAGE => max_message.min(MAX_MESSAGE_LEN),
            FRAME_TRAILER => MAX_TRAILER_LEN,
            other => return Err(RpcFrameError::FrameType(other)),
        };
        if len > max {
            return Err(RpcFrameError::TooLong { len, max });
        }
        Ok(Self { kind: b[0], len })
    }

    /// Emits a head.
    pub fn emit(kind: u8, len: usize) -> [u8; FRAME_HEAD_LEN] {
        let l = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        [kind, l[0], l[1], l[2], l[3]]
    }
}

/// The caller's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallHeader {
    /// The service name (1..=[`MAX_SERVICE`] bytes, no whitespace or
    /// control characters, no `.`).
    pub service: String,
    /// The method (1..=[`MAX_METHOD`] bytes, same characters).
    pub method: String,
    /// Remaining deadline in milliseconds when sent; 0: none.
    pub deadline_ms: u32,
    /// Whether the call is idempotent.
    pub idempotent: bool,
    /// Metadata pairs, at most [`MAX_METADATA`].
    pub metadata: Vec<(String, String)>,
}

/// A call header's fields, borrowed: what a caller encodes without
/// owning the names (the same frame as [`CallHeader::encode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallHeaderParts<'a> {
    /// The service name.
    pub service: &'a str,
    /// The method.
    pub method: &'a str,
    /// Remaining deadline in milliseconds; 0: none.
    pub deadline_ms: u32,
    /// Whether the call is idempotent.
    pub idempotent: bool,
    /// Metadata pairs.
    pub metadata: &'a [(String, String)],
}

impl CallHeaderParts<'_> {
    /// The whole frame's length (head and payload), as [`Self::encode`]
    /// writes it when the fields are within their bounds.
    pub fn encoded_len(&self) -> usize {
        let names = 2 + self.service.len().min(255) + self.method.len().min(255);
        let meta: usize = self
            .metadata
            .iter()
            .map(|(k, v)| 3 + k.len().min(255) + v.len().min(usize::from(u16::MAX)))
            .sum();
        FRAME_HEAD_LEN + 2 + 4 + names + 1 + meta
    }

    /// Appends the whole frame (head and payload).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RpcFrameError> {
        check_name(self.service, MAX_SERVICE, "service")?;
        check_name(self.method, MAX_METHOD, "method")?;
        if self.metadata.len() > MAX_METADATA {
            return Err(RpcFrameError::Field("too many metadata pairs"));
        }
        let start = out.len();
        out.extend_from_slice(&[FRAME_HEADER, 0, 0, 0, 0]);
        out.push(VERSION);
        out.push(if self.idempotent { FLAG_IDEMPOTENT } else { 0 });
        out.extend_from_slice(&self.deadline_ms.to_be_bytes());
        put_u8_str(out, self.service);
        put_u8_str(out, self.method);
        out.push(self.metadata.len() as u8);
        for (k, v) in self.metadata {
            if let Err(e) = check_meta(k, v) {
                out.truncate(start);
                return Err(e);
            }
            put_u8_str(out, k);
            put_u16_str(out, v);
        }
        let len = out.len() - start - FRAME_HEAD_LEN;
        if len > MAX_HEADER_LEN {
            out.truncate(start);
            return Err(RpcFrameError::TooLong {
                len,
                max: MAX_HEADER_LEN,
            });
        }
        out[start..start + FRAME_HEAD_LEN].copy_from_slice(&FrameHead::emit(FRAME_HEADER, len));
        Ok(())
    }
}

/// A decoded frame, borrowing its message payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The call header.
    Header(CallHeader),
    /// A body message.
    Message(&'a [u8]),
    /// The trailer.
    Trailer(Trailer),
}

/// The server's last frame: the call's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    /// The status code.
    pub code: Code,
    /// The kind (usually `code.kind()`; a handler may refine it), at most
    /// [`MAX_KIND`] bytes of `a-z`, `0-9`, `-`.
    pub kind: String,
    /// Human detail, at most [`MAX_DETAIL`] bytes.
    pub detail: String,
    /// Server pushback: do not retry before this many milliseconds.
    pub retry_after_ms: Option<u32>,
}

/// The whole frame of the plain `ok` trailer (code ok, kind `ok`, no
/// detail, no pushback): what [`Trailer::new`]`(Code::Ok, "")` encodes.
pub const OK_TRAILER: [u8; FRAME_HEAD_LEN + 7] =
    [FRAME_TRAILER, 0, 0, 0, 7, 0, 0, 2, b'o', b'k', 0, 0];

impl Trailer {
    /// A trailer of `code` with its own kind and `detail` (truncated to
    /// [`MAX_DETAIL`] at a character boundary).
    pub fn new(code: Code, detail: &str) -> Self {
        Self {
            code,
            kind: code.kind().to_string(),
            detail: truncate(detail, MAX_DETAIL).to_string(),
            retry_after_ms: None,
        }
    }

    /// Appends the whole frame (head and payload).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RpcFrameError> {
        check_kind(&self.kind)?;
        if self.detail.len() > MAX_DETAIL {
            return Err(RpcFrameError::Field("detail too long"));
        }
        let start = out.len();
        out.extend_from_slice(&[FRAME_TRAILER, 0, 0, 0, 0]);
        out.push(self.code.as_u8());
        match self.retry_after_ms {
            Some(ms) => {
                out.push(FLAG_RETRY_AFTER);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            None => out.push(0),
        }
        put_u8_str(out, &self.kind);
        put_u16_str(out, &self.detail);
        let len = out.len() - start - FRAME_HEAD_LEN;
        out[start..start + FRAME_HEAD_LEN].copy_from_slice(&FrameHead::emit(FRAME_TRAILER, len));
        Ok(())
    }

    /// Whether `payload` is the plain `ok` trailer ([`OK_TRAILER`]'s
    /// payload): a successful call's status, known without decoding.
    pub fn is_plain_ok(payload: &[u8]) -> bool {
        payload == &OK_TRAILER[FRAME_HEAD_LEN..]
    }

    /// Decodes a trailer payload.
    pub fn decode(payload: &[u8]) -> Result<Self, RpcFrameError> {
        let mut r = Reader(payload);
        let code = r.u8("code")?;
        let code = Code::from_u8(code).ok_or(RpcFrameError::Code(code))?;
        let flags = r.u8("flags")?;
        if flags & !FLAG_RETRY_AFTER != 0 {
            return Err(RpcFrameError::Flags(flags));
        }
        let retry_after_ms = if flags & FLAG_RETRY_AFTER != 0 {
            Some(r.u32("retry-after")?)
        } else {
            None
        };
        let kind = r.u8_str("kind")?;
        check_kind(&kind)?;
        let detail = r.u16_str("detail", MAX_DETAIL)?;
        r.end()?;
        Ok(Self {
            code,
            kind,
            detail,
            retry_after_ms,
        })
    }
}

impl CallHeader {
    /// The header as borrowed parts, to encode.
    pub fn as_parts(&self) -> CallHeaderParts<'_> {
        CallHeaderParts {
            service: &self.service,
            method: &self.method,
            deadline_ms: self.deadline_ms,
            idempotent: self.idempotent,
            metadata: &self.metadata,
        }
    }

    /// Appends the whole frame (head and payload).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RpcFrameError> {
        self.as_parts().encode(out)
    }

    /// Decodes a call header payload.
    pub fn decode(payload: &[u8]) -> Result<Self, RpcFrameError> {
        let mut r = Reader(payload);
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(RpcFrameError::Version(version));
        }
        let flags = r.u8("flags")?;
        if flags & !FLAG_IDEMPOTENT != 0 {
            return Err(RpcFrameError::Flags(flags));
        }
        let deadline_ms = r.u32("deadline")?;
        let service = r.u8_str("service")?;
        check_name(&service, MAX_SERVICE, "service")?;
        let method = r.u8_str("method")?;
        check_name(&method, MAX_METHOD, "method")?;
        let n = usize::from(r.u8("metadata count")?);
        if n > MAX_METADATA {
            return Err(RpcFrameError::Field("too many metadata pairs"));
        }
        let mut metadata = Vec::with_capacity(n);
        for _ in 0..n {
            let k = r.u8_str("metadata key")?;
            let v = r.u16_str("metadata value", MAX_META_VALUE)?;
            check_meta(&k, &v)?;
            metadata.push((k, v));
        }
        r.end()?;
        Ok(Self {
            service,
            method,
            deadline_ms,
            idempotent: flags & FLAG_IDEMPOTENT != 0,
            metadata,
        })
    }
}

/// Appends a message frame's head; the payload follows it.
pub fn message_head(len: usize) -> Result<[u8; FRAME_HEAD_LEN], RpcFrameError> {
    if len > MAX_MESSAGE_LEN {
        return Err(RpcFrameError::TooLong {
            len,
            max: MAX_MESSAGE_LEN,
        });
    }
    Ok(FrameHead::emit(FRAME_MESSAGE, len))
}

/// Decodes the first frame of `buf`: `Ok(None)` when `buf` holds no whole
/// frame yet, else the frame and the bytes it used.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, RpcFrameError> {
    let Some(head) = buf.first_chunk::<FRAME_HEAD_LEN>() else {
        return Ok(None);
    };
    let head = FrameHead::parse(*head, MAX_MESSAGE_LEN)?;
    let end = FRAME_HEAD_LEN + head.len;
    let Some(payload) = buf.get(FRAME_HEAD_LEN..end) else {
        return Ok(None);
    };
    let frame = match head.kind {
        FRAME_HEADER => Frame::Header(CallHeader::decode(payload)?),
        FRAME_TRAILER => Frame::Trailer(Trailer::decode(payload)?),
        _ => Frame::Message(payload),
    };
    Ok(Some((frame, end)))
}

/// What a `service-registration` ledger entry's spec says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceSpec {
    /// The service's version (at most [`MAX_SERVICE_VERSION`] bytes).
    pub version: String,
    /// Its methods (at most [`MAX_METHODS`], each a valid method name),
    /// built-in verbs not included.
    pub methods: Vec<String>,
    /// Whether callers must present a token.
    pub token_required: bool,
}

impl ServiceSpec {
    /// Encodes the spec (format byte [`VERSION`] first).
    pub fn encode(&self) -> Result<Vec<u8>, RpcFrameError> {
        if self.version.len() > MAX_SERVICE_VERSION {
            return Err(RpcFrameError::Field("version too long"));
        }
        if self.methods.len() > MAX_METHODS {
            return Err(RpcFrameError::Field("too many methods"));
        }
        let mut out = vec![VERSION, u8::from(self.token_required)];
        put_u8_str(&mut out, &self.version);
        out.push(self.methods.len() as u8);
        for m in &self.methods {
            check_name(m, MAX_METHOD, "method")?;
            put_u8_str(&mut out, m);
        }
        Ok(out)
    }

    /// Decodes a spec.
    pub fn decode(b: &[u8]) -> Result<Self, RpcFrameError> {
        let mut r = Reader(b);
        let format = r.u8("format")?;
        if format != VERSION {
            return Err(RpcFrameError::Version(format));
        }
        let flags = r.u8("flags")?;
        if flags & !FLAG_TOKEN_REQUIRED != 0 {
            return Err(RpcFrameError::Flags(flags));
        }
        let version = r.u8_str("version")?;
        if version.len() > MAX_SERVICE_VERSION {
            return Err(RpcFrameError::Field("version too long"));
        }
        let n = usize::from(r.u8("method count")?);
        if n > MAX_METHODS {
            return Err(RpcFrameError::Field("too many methods"));
        }
        let mut methods = Vec::with_capacity(n);
        for _ in 0..n {
            let m = r.u8_str("method")?;
            check_name(&m, MAX_METHOD, "method")?;
            methods.push(m);
        }
        r.end()?;
        Ok(Self {
            version,
            methods,
            token_required: flags & FLAG_TOKEN_REQUIRED != 0,
        })
    }
}

/// Whether `name` is a valid service or method name of at most `max`
/// bytes: printable ASCII other than space and `.`.
pub fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(|b| b.is_ascii_graphic() && b != b'.')
}

fn check_name(name: &str, max: usize, what: &'static str) -> Result<(), RpcFrameError> {
    if valid_name(name, max) {
        Ok(())
    } else {
        Err(RpcFrameError::Field(what))
    }
}

fn check_meta(k: &str, v: &str) -> Result<(), RpcFrameError> {
    let key_ok = !k.is_empty()
        && k.len() <= MAX_META_KEY
        && k.bytes()
            .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase());
    if !key_ok {
        return Err(RpcFrameError::Field("metadata key"));
    }
    if v.len() > MAX_META_VALUE || v.chars().any(char::is_control) {
        return Err(RpcFrameError::Field("metadata value"));
    }
    Ok(())
}

fn check_kind(kind: &str) -> Result<(), RpcFrameError> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_KIND
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RpcFrameError::Field("kind"))
    }
}

/// The longest prefix of `s` of at most `max` bytes ending at a character
/// boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_u8_str(out: &mut Vec<u8>, s: &str) {
    out.push(s.len().min(255) as u8);
    out.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
}

fn put_u16_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..n]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RpcFrameError> {
        if self.0.len() < n {
            return Err(RpcFrameError::Truncated(what));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, RpcFrameError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, RpcFrameError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn str(&mut self, n: usize, what: &'static str) -> Result<String, RpcFrameError> {
        let b = self.take(n, what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| RpcFrameError::Field(what))
    }

    fn u8_str(&mut self, what: &'static str) -> Result<String, RpcFrameError> {
        let n = usize::from(self.u8(what)?);
        self.str(n, what)
    }

    fn u16_str(&mut self, what: &'static str, max: usize) -> Result<String, RpcFrameError> {
        let b = self.take(2, what)?;
        let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
        if n > max {
            return Err(RpcFrameError::Field(what));
        }
        self.str(n, what)
    }

    fn end(&self) -> Result<(), RpcFrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RpcFrameError::Trailing(self.0.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> CallHeader {
        CallHeader {
            service: "echo".into(),
            method: "echo".into(),
            deadline_ms: 1500,
            idempotent: true,
            metadata: vec![("k".into(), "v".into())],
        }
    }

    #[test]
    fn header_parts_know_their_length() {
        let mut h = header();
        for n in 0..3 {
            let mut out = vec![9];
            h.encode(&mut out).unwrap();
            assert_eq!(out.len() - 1, h.as_parts().encoded_len(), "{n} pairs more");
            h.metadata.push((format!("key{n}"), "x".repeat(n * 300)));
        }
        h.metadata = vec![("bad key".into(), "v".into())];
        let mut out = vec![9];
        assert!(h.as_parts().encode(&mut out).is_err());
        assert_eq!(out, [9], "a refused header leaves nothing behind");
    }

    #[test]
    fn the_plain_ok_trailer_is_what_new_encodes() {
        let mut out = Vec::new();
        Trailer::new(Code::Ok, "").encode(&mut out).unwrap();
        assert_eq!(out, OK_TRAILER);
        assert!(Trailer::is_plain_ok(&out[FRAME_HEAD_LEN..]));
        let mut other = Vec::new();
        Trailer::new(Code::Ok, "fine").encode(&mut other).unwrap();
        assert!(!Trailer::is_plain_ok(&other[FRAME_HEAD_LEN..]));
        let mut failed = Vec::new();
        Trailer::new(Code::Unavailable, "")
            .encode(&mut failed)
            .unwrap();
        assert!(!Trailer::is_plain_ok(&failed[FRAME_HEAD_LEN..]));
    }

    #[test]
    fn golden_call_header() {
        let mut out = Vec::new();
        header().encode(&mut out).unwrap();
        let want: &[u8] = &[
            0x01, 0, 0, 0, 22, // head: type, length
            1, 0x01, 0, 0, 0x05, 0xdc, // version, idempotent, 1500 ms
            4, b'e', b'c', b'h', b'o', // service
            4, b'e', b'c', b'h', b'o', // method
            1, 1, b'k', 0, 1, b'v', // one metadata pair
        ];
        assert_eq!(out, want);
        let (frame, used) = decode_frame(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(frame, Frame::Header(header()));
    }

    #[test]
    fn golden_trailer_and_message() {
        let mut t = Trailer::new(Code::ResourceExhausted, "queue full");
        t.retry_after_ms = Some(100);
        let mut out = Vec::new();
        t.encode(&mut out).unwrap();
        let mut want = vec![0x03, 0, 0, 0, 37, 8, 0x01, 0, 0, 0, 100, 18];
        want.extend_from_slice(b"resource-exhausted");
        want.extend_from_slice(&[0, 10]);
        want.extend_from_slice(b"queue full");
        assert_eq!(out, want);
        assert_eq!(decode_frame(&out).unwrap().unwrap().0, Frame::Trailer(t));

        let mut msg = message_head(3).unwrap().to_vec();
        msg.extend_from_slice(b"abc");
        assert_eq!(msg, [0x02, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(
            decode_frame(&msg).unwrap(),
            Some((Frame::Message(b"abc"), 8))
        );
        // Not whole yet.
        assert_eq!(decode_frame(&msg[..7]).unwrap(), None);
        assert_eq!(decode_frame(&msg[..3]).unwrap(), None);
    }

    #[test]
    fn codes_round_trip_and_have_stable_numbers() {
        for (i, c) in Code::ALL.into_iter().enumerate() {
            assert_eq!(c.as_u8() as usize, i);
            assert_eq!(Code::from_u8(c.as_u8()), Some(c));
            assert_eq!(Code::from_kind(c.kind()), Some(c));
        }
        assert_eq!(Code::Unavailable.as_u8(), 14);
        assert_eq!(Code::NoResponders.as_u8(), 18);
        assert_eq!(Code::Revoked.as_u8(), 25);
        assert_eq!(Code::from_u8(26), None);
    }

    #[test]
    fn bad_input_gets_typed_errors() {
        assert_eq!(
            decode_frame(&[0x09, 0, 0, 0, 0]),
            Err(RpcFrameError::FrameType(9))
        );
        assert_eq!(
            decode_frame(&[0x01, 0, 1, 0, 0]),
            Err(RpcFrameError::TooLong {
                len: 65536,
                max: MAX_HEADER_LEN
            })
        );
        assert!(matches!(
            FrameHead::parse([0x02, 0, 0, 1, 0], 100),
            Err(RpcFrameError::TooLong { max: 100, .. })
        ));
        let mut out = Vec::new();
        header().encode(&mut out).unwrap();
        let payload = &out[FRAME_HEAD_LEN..];
        assert_eq!(
            CallHeader::decode(&payload[..payload.len() - 1]),
            Err(RpcFrameError::Truncated("metadata value"))
        );
        let mut extra = payload.to_vec();
        extra.push(0);
        assert_eq!(CallHeader::decode(&extra), Err(RpcFrameError::Trailing(1)));
        let mut v2 = payload.to_vec();
        v2[0] = 2;
        assert_eq!(CallHeader::decode(&v2), Err(RpcFrameError::Version(2)));
        let mut flags = payload.to_vec();
        flags[1] = 0x80;
        assert_eq!(CallHeader::decode(&flags), Err(RpcFrameError::Flags(0x80)));
        let bad = CallHeader {
            service: "a.b".into(),
            ..header()
        };
        assert_eq!(
            bad.encode(&mut Vec::new()),
            Err(RpcFrameError::Field("service"))
        );
        let many = CallHeader {
            metadata: vec![("k".into(), "v".into()); MAX_METADATA + 1],
            ..header()
        };
        assert!(many.encode(&mut Vec::new()).is_err());
        assert_eq!(
            Trailer::decode(&[99, 0, 1, b'x', 0, 0]),
            Err(RpcFrameError::Code(99))
        );
        assert_eq!(
            Trailer::decode(&[0, 0, 1, b'X', 0, 0]),
            Err(RpcFrameError::Field("kind"))
        );
        assert_eq!(
            RpcFrameError::FrameType(9).to_string(),
            "bad-frame-type: unknown frame type 0x09"
        );
    }

    #[test]
    fn service_spec_round_trips() {
        let spec = ServiceSpec {
            version: "1.2.0".into(),
            methods: vec!["echo".into(), "stream".into()],
            token_required: true,
        };
        let b = spec.encode().unwrap();
        assert_eq!(&b[..3], &[1, 1, 5]);
        assert_eq!(ServiceSpec::decode(&b).unwrap(), spec);
        assert!(ServiceSpec::decode(&b[..b.len() - 1]).is_err());
        let bad = ServiceSpec {
            methods: vec!["a b".into()],
            ..spec
        };
        assert!(bad.encode().is_err());
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
        let t = Trailer::new(Code::Internal, &"é".repeat(MAX_DETAIL));
        assert!(t.detail.len() <= MAX_DETAIL);
        t.encode(&mut Vec::new()).unwrap();
    }
}
