//! The frontend messages a script sends, one by one, encoded with
//! `postgres_protocol::message::frontend`, and how each reads in a report.

use crate::wire::protocol::target;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use std::fmt;

/// `S` (statement) or `P` (portal), for Describe and Close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

impl Target {
    fn byte(self) -> u8 {
        match self {
            Target::Statement => target::STATEMENT,
            Target::Portal => target::PORTAL,
        }
    }
}

/// Why: one frontend message of a script, kept symbolic so a report can print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Query(String),
    Parse {
        name: String,
        sql: String,
        types: Vec<u32>,
    },
    Bind {
        portal: String,
        statement: String,
        params: Vec<Option<String>>,
    },
    Execute {
        portal: String,
        max_rows: i32,
    },
    Describe(Target, String),
    Close(Target, String),
    Sync,
    Flush,
}

impl Msg {
    /// Appends the message's wire bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> std::io::Result<()> {
        match self {
            Msg::Query(sql) => frontend::query(sql, out),
            Msg::Parse { name, sql, types } => {
                frontend::parse(name, sql, types.iter().copied(), out)
            }
            Msg::Bind {
                portal,
                statement,
                params,
            } => encode_bind(portal, statement, params, out),
            Msg::Execute { portal, max_rows } => frontend::execute(portal, *max_rows, out),
            Msg::Describe(t, name) => frontend::describe(t.byte(), name, out),
            Msg::Close(t, name) => frontend::close(t.byte(), name, out),
            Msg::Sync => {
                frontend::sync(out);
                Ok(())
            }
            Msg::Flush => {
                frontend::flush(out);
                Ok(())
            }
        }
    }
}

/// Bind with text parameters and text results.
fn encode_bind(
    portal: &str,
    statement: &str,
    params: &[Option<String>],
    out: &mut BytesMut,
) -> std::io::Result<()> {
    let written = frontend::bind(
        portal,
        statement,
        std::iter::empty(),
        params.iter(),
        |value, buf| match value {
            Some(v) => {
                buf.extend_from_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        },
        std::iter::empty(),
        out,
    );
    written.map_err(|e| match e {
        frontend::BindError::Conversion(e) => std::io::Error::other(e),
        frontend::BindError::Serialization(e) => e,
    })
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Statement => "S",
            Target::Portal => "P",
        })
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::Query(sql) => write!(f, "Query({sql:?})"),
            Msg::Parse { name, sql, types } => write!(f, "Parse({name:?}, {sql:?}, {types:?})"),
            Msg::Bind {
                portal,
                statement,
                params,
            } => {
                let params: Vec<String> = params
                    .iter()
                    .map(|p| p.as_deref().map_or("NULL".into(), |v| format!("{v:?}")))
                    .collect();
                write!(
                    f,
                    "Bind(portal {portal:?}, statement {statement:?}, [{}])",
                    params.join(", ")
                )
            }
            Msg::Execute { portal, max_rows } => write!(f, "Execute({portal:?}, {max_rows})"),
            Msg::Describe(t, name) => write!(f, "Describe({t}, {name:?})"),
            Msg::Close(t, name) => write!(f, "Close({t}, {name:?})"),
            Msg::Sync => f.write_str("Sync"),
            Msg::Flush => f.write_str("Flush"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_carries_text_parameters_and_nulls() {
        let mut out = BytesMut::new();
        Msg::Bind {
            portal: "p".into(),
            statement: "s".into(),
            params: vec![Some("7".into()), None],
        }
        .encode(&mut out)
        .expect("encode");
        let body: &[u8] = &out[5..];
        // portal, statement, 0 formats, 2 values: "7" and NULL (-1), 0 result formats.
        let want: &[u8] = b"p\0s\0\0\0\0\x02\0\0\0\x017\xff\xff\xff\xff\0\0";
        assert_eq!(body, want);
        assert_eq!(out[0], b'B');
    }
}
