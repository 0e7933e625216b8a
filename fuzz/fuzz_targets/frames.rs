//! The pooled relay's `Framer` over arbitrary byte streams split at fuzzer-chosen points,
//! and the typed messages it hands to the pool (Parse, Bind, Describe/Close, Query,
//! ReadyForQuery, ParameterStatus).
//!
//! Invariants: the frames' raw bytes, concatenated, are exactly the bytes fed in up to
//! where framing stopped (nothing lost, duplicated or reordered); a whole frame's length
//! word matches its size; decoders never panic, and a decoded Parse or Bind re-encoded
//! under its own name is byte-identical to the original.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redshift_wire::{self as wire, Bind, DataRow, Execute, Frame, Framer, NamedTarget, Parse, Query};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = 16 + usize::from(data[0]) * 64;
    let streamable = if data[0] & 1 == 0 {
        wire::client_streamable
    } else {
        wire::server_streamable
    };
    let n_sizes = usize::from(data[1] % 8).min(data.len() - 2);
    let (sizes, stream) = data[2..].split_at(n_sizes);
    let mut framer = Framer::new(max, streamable);
    let mut fed = 0;
    let mut out = Vec::new();
    let mut chunk_sizes = sizes.iter().cycle();
    'feed: while fed < stream.len() {
        let n = chunk_sizes
            .next()
            .map_or(stream.len(), |&s| usize::from(s).max(1))
            .min(stream.len() - fed);
        framer.buf_mut().extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => {
                    if let Frame::Whole { tag, raw } = &f {
                        let len = i32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
                        assert_eq!(len as usize + 1, raw.len());
                        check_decoders(*tag, raw);
                    }
                    out.extend_from_slice(f.raw());
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    let consumed = out.len();
    assert_eq!(&out[..], &stream[..consumed]);
});

fn check_decoders(tag: u8, raw: &bytes::Bytes) {
    let body = wire::body(raw);
    match tag {
        b'P' => {
            if let Ok(p) = Parse::decode(&body) {
                if !p.name.contains('\0') && !p.query.contains('\0') {
                    assert_eq!(&p.encode_as(&p.name)[..], &raw[..]);
                }
                let _ = wire::param_type_count(&p.param_types);
            }
        }
        b'B' => {
            if let Ok(b) = Bind::decode(&body) {
                assert_eq!(&b.encode_for(&b.statement)[..], &raw[..]);
            }
        }
        b'D' | b'C' => {
            let _ = NamedTarget::decode(&body);
            if tag == b'C' {
                let _ = wire::command_tag(&body);
            } else if let Ok(mut row) = DataRow::decode(&body) {
                for _ in 0..row.columns().max(0) {
                    if row.next_value().is_err() {
                        break;
                    }
                }
            }
        }
        b'Q' => {
            if let Ok(q) = Query::decode(&body) {
                assert_eq!(q.utf8().is_some(), wire::parse_query(&body).is_ok());
            }
        }
        b'Z' => {
            let _ = wire::ready_status(&body);
        }
        b'S' => {
            let _ = wire::parse_parameter_status(&body);
        }
        b'E' => {
            let _ = wire::error_code(&body);
            let _ = Execute::decode(&body);
        }
        _ => {}
    }
}
