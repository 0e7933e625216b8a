//! Framing and typed messages for the pooled relay (the `Framer` also reads every tagged
//! message of the login phase, through `MessageReader`).
//!
//! The pooled relay must know where each message starts and ends, in both directions,
//! and must read (and sometimes rewrite) a handful of them: the client's Query, Parse,
//! Bind, Execute, Describe and Close; the server's ReadyForQuery, ParameterStatus,
//! ErrorResponse, CommandComplete, and the DataRows of its own read-back query.
//! Everything else (DataRow, CopyData, Redshift's extended RowDescription) is forwarded
//! as the bytes that arrived; large messages of those kinds are streamed in pieces and
//! never buffered whole.
//!
//! Pure framing: no decision about what to do with a message is made here.

use super::protocol::{self, backend, error_field, target, TxnStatus};
#[cfg(test)]
use super::sync;
use super::{frame, no_nul, put_cstr, take_cstr, written, WireError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;

/// Messages at least this large, of a kind nobody inspects, are streamed in pieces.
const STREAM_ABOVE: usize = 64 * 1024;

/// One unit the framer hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message: `raw` is exactly its bytes on the wire (tag, length, body).
    Whole { tag: u8, raw: Bytes },
    /// A piece of a large streamed message (`raw` starts with the header in the first piece).
    Piece { tag: u8, raw: Bytes, last: bool },
}

impl Frame {
    pub fn tag(&self) -> u8 {
        match self {
            Frame::Whole { tag, .. } | Frame::Piece { tag, .. } => *tag,
        }
    }
    pub fn raw(&self) -> &Bytes {
        match self {
            Frame::Whole { raw, .. } | Frame::Piece { raw, .. } => raw,
        }
    }
}

/// Splits a byte stream into messages without assuming one message per read.
///
/// `streamable(tag)` says which kinds may be streamed in pieces; every other message
/// must fit in `max` bytes, else the stream is malformed (the connection is closed).
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max: usize,
    streamable: fn(u8) -> bool,
    /// Tag and bytes still to come of a message being streamed.
    streaming: Option<(u8, usize)>,
}

impl Framer {
    pub fn new(max: usize, streamable: fn(u8) -> bool) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
            streamable,
            streaming: None,
        }
    }

    /// The buffer reads go into (reserve before reading).
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes read but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True when no partial message is held (a clean boundary).
    pub fn at_boundary(&self) -> bool {
        self.buf.is_empty() && self.streaming.is_none()
    }

    /// Bytes read but not yet handed out, giving up the framer.
    pub fn into_buffered(self) -> BytesMut {
        self.buf
    }

    /// Frees the buffer's memory when it holds nothing (idle sessions keep none).
    pub fn shrink_if_empty(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// The next frame, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if let Some((tag, remaining)) = self.streaming {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let n = remaining.min(self.buf.len());
            let raw = self.buf.split_to(n).freeze();
            let left = remaining - n;
            self.streaming = (left > 0).then_some((tag, left));
            return Ok(Some(Frame::Piece {
                tag,
                raw,
                last: left == 0,
            }));
        }
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len < 4 {
            return Err(WireError::BadLength(len.into()));
        }
        let total = len as usize + 1;
        if self.buf.len() >= total && (total <= self.max || !(self.streamable)(tag)) {
            if total > self.max {
                return Err(WireError::TooLarge {
                    len: total,
                    max: self.max,
                });
            }
            let raw = self.buf.split_to(total).freeze();
            return Ok(Some(Frame::Whole { tag, raw }));
        }
        if total >= STREAM_ABOVE && (self.streamable)(tag) {
            let n = self.buf.len().min(total);
            let raw = self.buf.split_to(n).freeze();
            let left = total - n;
            self.streaming = (left > 0).then_some((tag, left));
            return Ok(Some(Frame::Piece {
                tag,
                raw,
                last: left == 0,
            }));
        }
        if total > self.max {
            return Err(WireError::TooLarge {
                len: total,
                max: self.max,
            });
        }
        // Grow with the data, not with what the length word claims (a client cannot make
        // the proxy allocate a large buffer it never fills).
        self.buf.reserve((total - self.buf.len()).min(STREAM_ABOVE));
        Ok(None)
    }
}

/// Client messages the pooled relay streams instead of buffering: COPY data.
pub fn client_streamable(tag: u8) -> bool {
    tag == protocol::frontend::COPY_DATA
}

/// Server messages the pooled relay streams: rows, COPY data, function results, notices.
pub fn server_streamable(tag: u8) -> bool {
    matches!(
        tag,
        backend::DATA_ROW | backend::COPY_DATA | backend::FUNCTION_CALL_RESPONSE
    )
}

/// The body of a whole message (after tag and length).
pub fn body(raw: &Bytes) -> Bytes {
    raw.slice(5.min(raw.len())..)
}

/// A client's Parse: statement name, query text and the raw parameter-type list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    pub name: String,
    /// The query text (read lossily when it is not UTF-8: for classification only).
    pub query: String,
    /// The exact query bytes when they are not UTF-8 (a client encoding such as LATIN1):
    /// what is sent on, and what names the statement.
    pub query_raw: Option<Bytes>,
    /// Int16 count plus Int32 OIDs, kept as sent.
    pub param_types: Bytes,
}

impl Parse {
    /// How many parameter types it declares.
    pub fn param_count(&self) -> usize {
        match self.param_types.get(..2) {
            Some(&[a, b]) => usize::from(u16::from_be_bytes([a, b])),
            _ => 0,
        }
    }

    pub fn decode(body: &[u8]) -> Result<Parse, WireError> {
        let mut b = body;
        let name = take_cstr(&mut b)?;
        let (query, query_raw) = crate::take_text(&mut b)?;
        Ok(Parse {
            name,
            query,
            query_raw,
            param_types: Bytes::copy_from_slice(b),
        })
    }

    /// The same statement under another name.
    ///
    /// Hand-written: `frontend::parse` takes typed OIDs; the type list passes through as sent.
    pub fn encode_as(&self, name: &str) -> BytesMut {
        let mut body = BytesMut::with_capacity(name.len() + self.query.len() + 8);
        put_cstr(&mut body, name);
        match &self.query_raw {
            Some(raw) => {
                body.put_slice(raw);
                body.put_u8(0);
            }
            None => put_cstr(&mut body, &self.query),
        }
        body.put_slice(&self.param_types);
        frame(protocol::frontend::PARSE, &body)
    }
}

/// A client's Bind: portal and statement names; the rest (formats, values) kept as sent.
///
/// Hand-written rather than `postgres_protocol::message::frontend::bind`, which encodes
/// from typed values: here only the statement name changes and the values pass as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub portal: String,
    pub statement: String,
    pub rest: Bytes,
}

impl Bind {
    /// How many parameter values it supplies (`None` if the body is cut short).
    pub fn param_count(&self) -> Option<usize> {
        let r: &[u8] = &self.rest;
        let formats = usize::from(u16::from_be_bytes([*r.first()?, *r.get(1)?]));
        let at = 2 + 2 * formats;
        Some(usize::from(u16::from_be_bytes([
            *r.get(at)?,
            *r.get(at + 1)?,
        ])))
    }

    pub fn decode(body: &Bytes) -> Result<Bind, WireError> {
        let mut b: &[u8] = body;
        let portal = take_cstr(&mut b)?;
        let statement = take_cstr(&mut b)?;
        let used = body.len() - b.len();
        Ok(Bind {
            portal,
            statement,
            rest: body.slice(used..),
        })
    }

    /// The same Bind aimed at statement `name`.
    pub fn encode_for(&self, name: &str) -> BytesMut {
        let mut body =
            BytesMut::with_capacity(self.portal.len() + name.len() + 2 + self.rest.len());
        put_cstr(&mut body, &self.portal);
        put_cstr(&mut body, name);
        body.put_slice(&self.rest);
        frame(protocol::frontend::BIND, &body)
    }
}

/// Describe or Close: `kind` is `S` (statement) or `P` (portal), then the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTarget {
    pub kind: u8,
    pub name: String,
}

impl NamedTarget {
    pub fn decode(body: &[u8]) -> Result<NamedTarget, WireError> {
        let mut b = body;
        let Some((&kind, rest)) = b.split_first() else {
            return Err(WireError::Malformed("empty Describe/Close"));
        };
        if kind != target::STATEMENT && kind != target::PORTAL {
            return Err(WireError::Malformed("Describe/Close of unknown kind"));
        }
        b = rest;
        let name = take_cstr(&mut b)?;
        Ok(NamedTarget { kind, name })
    }
}

/// A Describe (`D`) of statement (`kind` `S`) or portal (`P`) `name`.
pub fn describe(kind: u8, name: &str) -> BytesMut {
    written(|out| frontend::describe(kind, &no_nul(name), out))
}

/// A Close (`C`) of statement (`kind` `S`) or portal (`P`) `name`.
pub fn close(kind: u8, name: &str) -> BytesMut {
    written(|out| frontend::close(kind, &no_nul(name), out))
}

/// A simple Query message (NULs inside `text` dropped).
pub fn query(text: &str) -> BytesMut {
    written(|out| frontend::query(&no_nul(text), out))
}

/// An Execute (`E`) of portal `portal`, returning at most `max_rows` rows (0: all).
pub fn execute(portal: &str, max_rows: i32) -> BytesMut {
    written(|out| frontend::execute(&no_nul(portal), max_rows, out))
}

/// Terminate.
pub fn terminate() -> BytesMut {
    let mut out = BytesMut::with_capacity(5);
    frontend::terminate(&mut out);
    out
}

/// ParseComplete, which the proxy sends when the server already has the statement.
pub fn parse_complete() -> BytesMut {
    frame(backend::PARSE_COMPLETE, &[])
}

/// CloseComplete, for a Close the proxy answers itself.
pub fn close_complete() -> BytesMut {
    frame(backend::CLOSE_COMPLETE, &[])
}

/// CommandComplete with `tag`.
pub fn command_complete(tag: &str) -> BytesMut {
    let mut body = BytesMut::new();
    put_cstr(&mut body, tag);
    frame(backend::COMMAND_COMPLETE, &body)
}

/// ReadyForQuery with the given transaction status.
pub fn ready_for_query(status: TxnStatus) -> BytesMut {
    frame(backend::READY_FOR_QUERY, &[status.byte()])
}

/// The transaction status of a ReadyForQuery body.
pub fn ready_status(body: &[u8]) -> Result<TxnStatus, WireError> {
    TxnStatus::from_ready_body(body)
}

/// BindComplete, for a Bind the proxy answers itself.
pub fn bind_complete() -> BytesMut {
    frame(backend::BIND_COMPLETE, &[])
}

/// NoData, the Describe answer for a statement or portal that returns no rows.
pub fn no_data() -> BytesMut {
    frame(backend::NO_DATA, &[])
}

/// ParameterDescription with the parameter types given as a Parse's `param_types` (an
/// Int16 count and Int32 OIDs: the same layout).
pub fn parameter_description(param_types: &[u8]) -> BytesMut {
    frame(backend::PARAMETER_DESCRIPTION, param_types)
}

/// ParameterDescription of a statement without parameters.
pub fn no_parameters() -> BytesMut {
    frame(backend::PARAMETER_DESCRIPTION, &0i16.to_be_bytes())
}

/// A client's Execute: the portal and the row limit (0: all rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    pub portal: String,
    pub max_rows: i32,
}

impl Execute {
    pub fn decode(body: &[u8]) -> Result<Execute, WireError> {
        let mut b = body;
        let portal = take_cstr(&mut b)?;
        if b.len() != 4 {
            return Err(WireError::Malformed("Execute without a row limit"));
        }
        Ok(Execute {
            portal,
            max_rows: b.get_i32(),
        })
    }
}

/// A client's simple Query: its SQL text (the one way to read a Query body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The text (read lossily when it is not UTF-8: for classification only).
    pub text: String,
    /// The exact text bytes when they are not UTF-8 (a client encoding such as LATIN1).
    pub text_raw: Option<Bytes>,
}

impl Query {
    pub fn decode(body: &[u8]) -> Result<Query, WireError> {
        let mut b = body;
        let (text, text_raw) = crate::take_text(&mut b)?;
        Ok(Query { text, text_raw })
    }

    /// The text when it is UTF-8 as sent; `None` when it is in another client encoding.
    pub fn utf8(&self) -> Option<&str> {
        self.text_raw.is_none().then_some(self.text.as_str())
    }
}

/// The command tag of a CommandComplete body (`SELECT 1`, `DEALLOCATE`, ...).
pub fn command_tag(body: &[u8]) -> Result<String, WireError> {
    let mut b = body;
    crate::take_text(&mut b).map(|(tag, _)| tag)
}

/// A DataRow body, read one column value at a time.
#[derive(Debug, Clone)]
pub struct DataRow<'a> {
    columns: i16,
    rest: &'a [u8],
}

impl<'a> DataRow<'a> {
    /// Reads the column count; the values are read by `next_value`.
    pub fn decode(body: &'a [u8]) -> Result<DataRow<'a>, WireError> {
        let mut b = body;
        if b.len() < 2 {
            return Err(WireError::Malformed("DataRow without a column count"));
        }
        let columns = b.get_i16();
        Ok(DataRow { columns, rest: b })
    }

    /// How many columns the row says it has.
    pub fn columns(&self) -> i16 {
        self.columns
    }

    /// The next column's value; `None` is NULL (a negative length: -1 on the wire).
    pub fn next_value(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        if self.rest.len() < 4 {
            return Err(WireError::Malformed("DataRow value cut short"));
        }
        let len = self.rest.get_i32();
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        let Some((value, rest)) = self.rest.split_at_checked(len) else {
            return Err(WireError::Malformed("DataRow value cut short"));
        };
        self.rest = rest;
        Ok(Some(value))
    }
}

/// The ErrorResponse (or NoticeResponse) `body` with every `from` in its message and
/// detail fields said as `to`, framed again under `tag`: a server error about a statement
/// the proxy renamed names the statement the client knows.
pub fn rename_in_error(tag: u8, body: &[u8], from: &str, to: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + to.len());
    let mut b = body;
    while let Some((&kind, rest)) = b.split_first() {
        if kind == 0 {
            break;
        }
        b = rest;
        let Some(end) = b.iter().position(|&c| c == 0) else {
            break;
        };
        let value = &b[..end];
        out.put_u8(kind);
        match (kind, std::str::from_utf8(value)) {
            (error_field::MESSAGE | error_field::DETAIL, Ok(text)) => {
                put_cstr(&mut out, &text.replace(from, to))
            }
            _ => {
                out.put_slice(value);
                out.put_u8(0);
            }
        }
        b = &b[end + 1..];
    }
    out.put_u8(0);
    frame(tag, &out)
}

/// The (SQLSTATE, severity) of an ErrorResponse, read cheaply.
pub fn error_code(body: &[u8]) -> (String, String) {
    let f = super::parse_error_fields(body);
    (f.code, f.severity)
}

/// Int16 count of a Parse's parameter-type list (for sanity checks).
pub fn param_type_count(types: &[u8]) -> Result<i16, WireError> {
    let mut b = types;
    if b.len() < 2 {
        return Err(WireError::Malformed("Parse without parameter count"));
    }
    let n = b.get_i16();
    if n < 0 || b.len() != n as usize * 4 {
        return Err(WireError::Malformed("Parse parameter types of wrong size"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: u8) -> bool {
        false
    }

    #[test]
    fn framer_splits_messages_across_any_read_boundaries() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&query("SELECT 1"));
        wire.extend_from_slice(&sync());
        wire.extend_from_slice(&parse_complete());
        for cut in 0..wire.len() {
            let mut f = Framer::new(1024, never);
            let mut got = Vec::new();
            f.buf_mut().extend_from_slice(&wire[..cut]);
            while let Some(fr) = f.next_frame().unwrap() {
                got.push(fr);
            }
            f.buf_mut().extend_from_slice(&wire[cut..]);
            while let Some(fr) = f.next_frame().unwrap() {
                got.push(fr);
            }
            let tags: Vec<u8> = got.iter().map(Frame::tag).collect();
            assert_eq!(tags, b"QS1", "cut at {cut}");
            assert!(f.at_boundary());
        }
    }

    #[test]
    fn large_streamable_messages_come_in_pieces_that_add_up() {
        let big = frame(b'D', &vec![7u8; 200_000]);
        let mut f = Framer::new(1024, server_streamable);
        let mut total = 0;
        let mut pieces = 0;
        for chunk in big.chunks(30_000) {
            f.buf_mut().extend_from_slice(chunk);
            while let Some(fr) = f.next_frame().unwrap() {
                total += fr.raw().len();
                pieces += 1;
                if let Frame::Piece { last: true, .. } = fr {
                    assert_eq!(total, big.len());
                }
            }
        }
        assert_eq!(total, big.len());
        assert!(pieces > 1);
        assert!(f.at_boundary());
    }

    #[test]
    fn oversized_inspected_message_is_an_error() {
        let mut f = Framer::new(100, client_streamable);
        f.buf_mut().extend_from_slice(&query(&"x".repeat(200)));
        assert!(matches!(f.next_frame(), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn bad_length_is_an_error() {
        let mut f = Framer::new(100, never);
        f.buf_mut().extend_from_slice(&[b'Q', 0, 0, 0, 1]);
        assert!(matches!(f.next_frame(), Err(WireError::BadLength(1))));
    }

    #[test]
    fn parse_and_bind_round_trip_under_a_new_name() {
        let mut body = BytesMut::new();
        put_cstr(&mut body, "s1");
        put_cstr(&mut body, "SELECT $1");
        body.put_i16(1);
        body.put_i32(23);
        let p = Parse::decode(&body).unwrap();
        assert_eq!(p.name, "s1");
        assert_eq!(param_type_count(&p.param_types).unwrap(), 1);
        let renamed = p.encode_as("rip_x");
        let again = Parse::decode(&renamed[5..]).unwrap();
        assert_eq!(again.name, "rip_x");
        assert_eq!(again.query, "SELECT $1");
        assert_eq!(again.param_types, p.param_types);

        let mut bb = BytesMut::new();
        put_cstr(&mut bb, "");
        put_cstr(&mut bb, "s1");
        bb.put_slice(&[0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0]);
        let b = Bind::decode(&bb.freeze()).unwrap();
        assert_eq!(b.statement, "s1");
        let re = b.encode_for("rip_x");
        let again = Bind::decode(&Bytes::copy_from_slice(&re[5..])).unwrap();
        assert_eq!(again.statement, "rip_x");
        assert_eq!(again.rest, b.rest);
    }

    fn execute_body(portal: &str, max_rows: i32) -> Vec<u8> {
        execute(portal, max_rows)[5..].to_vec()
    }

    #[test]
    fn execute_decodes_its_portal_and_row_limit() {
        assert_eq!(
            Execute::decode(&execute_body("p1", 50)).unwrap(),
            Execute {
                portal: "p1".into(),
                max_rows: 50
            }
        );
    }

    #[test]
    fn execute_without_a_row_limit_is_malformed() {
        assert!(Execute::decode(b"p1\0").is_err());
    }

    #[test]
    fn execute_with_bytes_after_its_row_limit_is_malformed() {
        let mut body = execute_body("", 0);
        body.push(0);
        assert!(Execute::decode(&body).is_err());
    }

    #[test]
    fn execute_without_a_terminated_portal_is_malformed() {
        assert!(Execute::decode(b"p1").is_err());
    }

    #[test]
    fn query_decodes_utf8_text_without_raw_bytes() {
        let q = Query::decode(&query("SELECT 'é'")[5..]).unwrap();
        assert_eq!(
            (q.text.as_str(), q.text_raw.as_deref(), q.utf8()),
            ("SELECT 'é'", None, Some("SELECT 'é'"))
        );
    }

    #[test]
    fn query_in_another_client_encoding_keeps_its_exact_bytes() {
        let q = Query::decode(b"SELECT '\xe9'\0").unwrap();
        assert_eq!(
            (q.text.as_str(), q.text_raw.as_deref(), q.utf8()),
            ("SELECT '\u{fffd}'", Some(&b"SELECT '\xe9'"[..]), None)
        );
    }

    #[test]
    fn query_without_a_terminator_is_malformed() {
        assert!(Query::decode(b"SELECT 1").is_err());
    }

    #[test]
    fn parse_in_another_client_encoding_keeps_its_exact_bytes() {
        let p = Parse::decode(b"s1\0SELECT '\xe9'\0\0\0").unwrap();
        assert_eq!(p.query_raw.as_deref(), Some(&b"SELECT '\xe9'"[..]));
    }

    #[test]
    fn command_tag_reads_the_tag_of_a_command_complete() {
        assert_eq!(
            command_tag(&command_complete("DEALLOCATE ALL")[5..]).unwrap(),
            "DEALLOCATE ALL"
        );
    }

    #[test]
    fn data_row_reads_values_and_nulls_in_order() {
        let msg = crate::data_row(&[Some("a"), None, Some("")]);
        let mut row = DataRow::decode(&msg[5..]).unwrap();
        assert_eq!(row.columns(), 3);
        let values: Vec<Option<&[u8]>> = (0..3).map(|_| row.next_value().unwrap()).collect();
        assert_eq!(values, vec![Some(&b"a"[..]), None, Some(&b""[..])]);
    }

    #[test]
    fn data_row_without_a_column_count_is_malformed() {
        assert!(DataRow::decode(&[0]).is_err());
    }

    #[test]
    fn data_row_value_longer_than_the_body_is_malformed() {
        let mut row = DataRow::decode(&[0, 1, 0, 0, 0, 9, b'x']).unwrap();
        assert!(row.next_value().is_err());
    }

    #[test]
    fn data_row_value_without_a_whole_length_is_malformed() {
        let mut row = DataRow::decode(&[0, 1, 0, 0]).unwrap();
        assert!(row.next_value().is_err());
    }

    #[test]
    fn framer_gives_back_the_bytes_it_has_not_handed_out() {
        let mut f = Framer::new(1024, never);
        f.buf_mut().extend_from_slice(&sync());
        f.buf_mut().extend_from_slice(b"Q\0");
        assert!(matches!(
            f.next_frame(),
            Ok(Some(Frame::Whole { tag: b'S', .. }))
        ));
        assert!(matches!(f.next_frame(), Ok(None)));
        assert_eq!(&f.into_buffered()[..], b"Q\0");
    }

    #[test]
    fn describe_close_targets_need_a_known_kind() {
        assert_eq!(
            NamedTarget::decode(b"Sname\0").unwrap(),
            NamedTarget {
                kind: b'S',
                name: "name".into()
            }
        );
        assert!(NamedTarget::decode(b"Xname\0").is_err());
        assert!(NamedTarget::decode(b"").is_err());
        assert!(NamedTarget::decode(b"Snoterm").is_err());
    }
}
