//! Answers in a normalized form: what a client sees, without what legitimately differs
//! between two private sessions (process ids, cancel keys, error positions and source
//! locations, the order and number of ParameterStatus messages).

use crate::wire::protocol::backend;
use crate::wire::{self, Message, TxnStatus};
use std::collections::BTreeMap;
use std::fmt;

/// Why: one normalized backend message (or how reading ended early), compared side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    PortalSuspended,
    EmptyQuery,
    ParameterDescription(Vec<u32>),
    /// Column names and type oids.
    RowDescription(Vec<(String, u32)>),
    DataRow(Vec<Option<String>>),
    CommandComplete(String),
    Error(Report),
    Notice(Report),
    /// Transaction status (`None`: not one the protocol knows), and the client's view of the reported parameters the script
    /// touched (the last ParameterStatus value it got for each).
    Ready(Option<TxnStatus>, Vec<(String, Option<String>)>),
    /// Any other message, by tag.
    Other(char),
    /// No answer within the step's time limit.
    Timeout,
    /// The connection ended or broke.
    Closed(String),
}

/// Why: the parts of an ErrorResponse or NoticeResponse a client acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl Event {
    /// The normalized form of `msg`; `None` for messages left out of the comparison
    /// (ParameterStatus, BackendKeyData, NotificationResponse).
    pub fn from_message(msg: &Message) -> Option<Event> {
        let event = match msg.tag {
            backend::PARSE_COMPLETE => Event::ParseComplete,
            backend::BIND_COMPLETE => Event::BindComplete,
            backend::CLOSE_COMPLETE => Event::CloseComplete,
            backend::NO_DATA => Event::NoData,
            backend::PORTAL_SUSPENDED => Event::PortalSuspended,
            backend::EMPTY_QUERY_RESPONSE => Event::EmptyQuery,
            backend::PARAMETER_DESCRIPTION => Event::ParameterDescription(parse_oids(&msg.body)),
            backend::ROW_DESCRIPTION => Event::RowDescription(parse_columns(&msg.body)),
            backend::DATA_ROW => Event::DataRow(parse_values(&msg.body)),
            backend::COMMAND_COMPLETE => Event::CommandComplete(cstr(&msg.body).0),
            backend::ERROR_RESPONSE => Event::Error(report(&msg.body)),
            backend::NOTICE_RESPONSE => Event::Notice(report(&msg.body)),
            backend::PARAMETER_STATUS
            | backend::BACKEND_KEY_DATA
            | backend::NOTIFICATION_RESPONSE => return None,
            backend::READY_FOR_QUERY => Event::Ready(wire::ready_status(&msg.body).ok(), vec![]),
            other => Event::Other(char::from(other)),
        };
        Some(event)
    }
}

fn report(body: &[u8]) -> Report {
    let f = wire::parse_error_fields(body);
    Report {
        severity: f.severity,
        code: f.code,
        message: f.message,
    }
}

/// Reads a C string; returns it (lossy UTF-8) and the rest. A missing terminator takes all.
fn cstr(b: &[u8]) -> (String, &[u8]) {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let rest = b.get(end + 1..).unwrap_or(&[]);
    (String::from_utf8_lossy(&b[..end]).into_owned(), rest)
}

fn be_i16(b: &[u8]) -> Option<(i16, &[u8])> {
    let (n, rest) = b.split_first_chunk::<2>()?;
    Some((i16::from_be_bytes(*n), rest))
}

fn be_i32(b: &[u8]) -> Option<(i32, &[u8])> {
    let (n, rest) = b.split_first_chunk::<4>()?;
    Some((i32::from_be_bytes(*n), rest))
}

fn parse_oids(body: &[u8]) -> Vec<u32> {
    let mut oids = Vec::new();
    let Some((count, mut rest)) = be_i16(body) else {
        return oids;
    };
    for _ in 0..count {
        let Some((oid, r)) = be_i32(rest) else { break };
        oids.push(oid as u32);
        rest = r;
    }
    oids
}

/// RowDescription: per field name, table oid (4), column (2), type oid (4), size (2),
/// modifier (4), format (2). Only the name and the type oid are kept (table oids differ
/// between databases).
fn parse_columns(body: &[u8]) -> Vec<(String, u32)> {
    let mut columns = Vec::new();
    let Some((count, mut rest)) = be_i16(body) else {
        return columns;
    };
    for _ in 0..count {
        let (name, r) = cstr(rest);
        let Some(type_oid) = r.get(6..10) else { break };
        let oid = u32::from_be_bytes([type_oid[0], type_oid[1], type_oid[2], type_oid[3]]);
        columns.push((name, oid));
        rest = r.get(18..).unwrap_or(&[]);
    }
    columns
}

fn parse_values(body: &[u8]) -> Vec<Option<String>> {
    let mut values = Vec::new();
    let Some((count, mut rest)) = be_i16(body) else {
        return values;
    };
    for _ in 0..count {
        let Some((len, r)) = be_i32(rest) else { break };
        if len < 0 {
            values.push(None);
            rest = r;
            continue;
        }
        let len = len as usize;
        let Some(value) = r.get(..len) else { break };
        values.push(Some(String::from_utf8_lossy(value).into_owned()));
        rest = &r[len..];
    }
    values
}

/// The reported parameters of `names` as the client last saw them.
pub fn view_of(
    reported: &BTreeMap<String, String>,
    names: &[String],
) -> Vec<(String, Option<String>)> {
    names
        .iter()
        .map(|n| (n.clone(), reported.get(n).cloned()))
        .collect()
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ParseComplete => f.write_str("ParseComplete"),
            Event::BindComplete => f.write_str("BindComplete"),
            Event::CloseComplete => f.write_str("CloseComplete"),
            Event::NoData => f.write_str("NoData"),
            Event::PortalSuspended => f.write_str("PortalSuspended"),
            Event::EmptyQuery => f.write_str("EmptyQueryResponse"),
            Event::ParameterDescription(oids) => write!(f, "ParameterDescription {oids:?}"),
            Event::RowDescription(cols) => {
                let cols: Vec<String> = cols.iter().map(|(n, o)| format!("{n}:{o}")).collect();
                write!(f, "RowDescription [{}]", cols.join(", "))
            }
            Event::DataRow(values) => {
                let values: Vec<String> = values
                    .iter()
                    .map(|v| v.as_deref().map_or("NULL".into(), |v| format!("{v:?}")))
                    .collect();
                write!(f, "DataRow [{}]", values.join(", "))
            }
            Event::CommandComplete(tag) => write!(f, "CommandComplete {tag:?}"),
            Event::Error(r) => write!(f, "Error {} {} {:?}", r.severity, r.code, r.message),
            Event::Notice(r) => write!(f, "Notice {} {} {:?}", r.severity, r.code, r.message),
            Event::Ready(status, params) => {
                let status = status.map_or('?', |s| char::from(s.byte()));
                write!(f, "ReadyForQuery {status}")?;
                for (name, value) in params {
                    write!(
                        f,
                        " {name}={}",
                        value.as_deref().unwrap_or("(never reported)")
                    )?;
                }
                Ok(())
            }
            Event::Other(tag) => write!(f, "message {tag:?}"),
            Event::Timeout => f.write_str("(no answer in time)"),
            Event::Closed(why) => write!(f, "(connection ended: {why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(tag: u8, body: &[u8]) -> Message {
        Message {
            tag,
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn errors_keep_severity_code_and_message_but_not_position_or_source() {
        let body = b"SERROR\0VERROR\0C42P01\0Mrelation \"t\" does not exist\0P15\0Fparse_relation.c\0L1392\0RparserOpenTable\0\0";
        let want = Event::Error(Report {
            severity: "ERROR".into(),
            code: "42P01".into(),
            message: "relation \"t\" does not exist".into(),
        });
        assert_eq!(Event::from_message(&msg(b'E', body)), Some(want));
    }

    #[test]
    fn row_descriptions_keep_names_and_type_oids_only() {
        let mut body = vec![0, 2];
        for (name, table, oid) in [("a", 16384u32, 23u32), ("b", 0, 25)] {
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            body.extend_from_slice(&table.to_be_bytes());
            body.extend_from_slice(&1i16.to_be_bytes());
            body.extend_from_slice(&oid.to_be_bytes());
            body.extend_from_slice(&4i16.to_be_bytes());
            body.extend_from_slice(&(-1i32).to_be_bytes());
            body.extend_from_slice(&0i16.to_be_bytes());
        }
        let want = Event::RowDescription(vec![("a".into(), 23), ("b".into(), 25)]);
        assert_eq!(Event::from_message(&msg(b'T', &body)), Some(want));
    }

    #[test]
    fn data_rows_keep_values_and_nulls() {
        let body = b"\0\x02\0\0\0\x02hi\xff\xff\xff\xff";
        let want = Event::DataRow(vec![Some("hi".into()), None]);
        assert_eq!(Event::from_message(&msg(b'D', body)), Some(want));
    }

    #[test]
    fn parameter_status_and_backend_keys_are_left_out() {
        assert_eq!(Event::from_message(&msg(b'S', b"TimeZone\0UTC\0")), None);
        assert_eq!(
            Event::from_message(&msg(b'K', b"\0\0\0\x01\0\0\0\x02")),
            None
        );
    }
}
