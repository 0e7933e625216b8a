//! `MessageReader` over arbitrary byte streams split at fuzzer-chosen points.
//!
//! Invariant: the messages it returns, re-framed with `Message::to_wire()`, followed
//! by `into_leftover()`, are exactly the bytes it has pulled from the stream, and the
//! reason it stopped matches what those bytes say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redshift_iam_proxy_fuzz::{block_on, ChunkedReader};
use redshift_wire as wire;
use wire::{MessageReader, WireError};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // Byte 0: the reader's cap (the real one, or small ones to hit TooLarge).
    let max = match data[0] % 4 {
        0 => wire::MAX_HANDSHAKE_MESSAGE,
        1 => 4,
        2 => 5 + usize::from(data[0] >> 2),
        _ => 1024,
    };
    // Byte 1: how many of the next bytes are chunk sizes for the split stream.
    let n_sizes = usize::from(data[1] % 8).min(data.len() - 2);
    let (sizes, stream) = data[2..].split_at(n_sizes);

    let mut src = ChunkedReader::new(stream, sizes);
    let mut reader = MessageReader::new(max);
    let mut out = Vec::new();
    let err = loop {
        match block_on(reader.read(&mut src)) {
            Ok(m) => {
                assert!(m.body.len() + 4 <= max);
                out.extend_from_slice(&m.to_wire());
            }
            Err(e) => break e,
        }
    };
    let pulled = &stream[..src.pos];
    let leftover = reader.into_leftover();
    out.extend_from_slice(&leftover);
    assert_eq!(out, pulled, "stopped with {err:?}");

    let len = |b: &[u8]| i32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    match err {
        WireError::Closed => {
            assert_eq!(src.pos, stream.len());
            // Whatever is left is an incomplete (or not yet judged) frame.
            assert!(leftover.len() < 5 || leftover.len() < len(&leftover) as usize + 1);
        }
        WireError::BadLength(l) => {
            assert!(leftover.len() >= 5 && l == i64::from(len(&leftover)) && l < 4);
        }
        WireError::TooLarge { len: l, max: m } => {
            assert!(leftover.len() >= 5 && l == len(&leftover) as usize && l > max && m == max);
        }
        other => panic!("unexpected error {other:?}"),
    }
});
