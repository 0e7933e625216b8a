//! Client startup-phase packets: `parse_startup_frame`, `read_startup_frame`, and the
//! `startup_message` -> `parse_startup_frame` round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redshift_iam_proxy_fuzz::{block_on, ChunkedReader};
use redshift_wire as wire;
use wire::{StartupFrame, WireError};

/// The proxy's default `max_startup_packet_bytes` is 10 000; a small cap is also tried.
const MAXES: [usize; 3] = [10_000, 64, 8];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => body(rest),
        1 => reader(mode, rest),
        _ => round_trip(rest),
    }
});

/// The parser alone: anything it accepts re-encodes to exactly the bytes it read.
fn body(b: &[u8]) {
    let Ok(frame) = wire::parse_startup_frame(b) else {
        return;
    };
    let reencoded: Vec<u8> = match &frame {
        StartupFrame::SslRequest => wire::ssl_request()[4..].to_vec(),
        StartupFrame::GssEncRequest => wire::GSSENC_REQUEST_CODE.to_be_bytes().to_vec(),
        StartupFrame::Cancel { pid, secret } => {
            assert!((4..=256).contains(&secret.len()));
            wire::cancel_request(*pid, secret)[4..].to_vec()
        }
        StartupFrame::Startup { minor, params } => {
            let p: Vec<(&str, &str)> = params.iter().collect();
            let mut m = wire::startup_message(&p)[4..].to_vec();
            m[..4].copy_from_slice(&(0x0003_0000 | i32::from(*minor)).to_be_bytes());
            m
        }
    };
    assert_eq!(reencoded, b, "accepted {frame:?}");
}

/// The async reader over a split stream agrees with the length word and the parser.
fn reader(mode: u8, b: &[u8]) {
    let max = MAXES[usize::from(mode / 3) % MAXES.len()];
    let (sizes, stream) = b.split_at(b.len().min(2));
    let mut r = ChunkedReader::new(stream, sizes);
    let got = block_on(wire::read_startup_frame(&mut r, max));
    if stream.len() < 4 {
        assert!(matches!(got, Err(WireError::Closed)), "{got:?}");
        return;
    }
    let len = i32::from_be_bytes(stream[..4].try_into().unwrap());
    if len < 8 {
        assert!(matches!(got, Err(WireError::BadLength(l)) if l == i64::from(len)));
    } else if len as usize > max {
        assert!(matches!(got, Err(WireError::TooLarge { .. })), "{got:?}");
    } else if stream.len() < len as usize {
        assert!(matches!(got, Err(WireError::Io(_))), "{got:?}");
    } else {
        // Never reads past its own packet: the rest belongs to the next phase.
        assert_eq!(r.pos, len as usize);
        let want = wire::parse_startup_frame(&stream[4..len as usize]);
        match (got, want) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("reader {a:?} vs parser {b:?}"),
        }
    }
}

/// `startup_message(params)` then `parse_startup_frame` gives back the params, for
/// distinct non-empty keys without NUL bytes (an empty key ends the list on the wire).
fn round_trip(b: &[u8]) {
    let text = String::from_utf8_lossy(b);
    let parts: Vec<&str> = text.split('\0').collect();
    let mut params: Vec<(&str, &str)> = Vec::new();
    for kv in parts.chunks(2) {
        let (k, v) = (kv[0], kv.get(1).copied().unwrap_or(""));
        if !k.is_empty() && !params.iter().any(|(pk, _)| *pk == k) {
            params.push((k, v));
        }
    }
    let msg = wire::startup_message(&params);
    let want = StartupFrame::Startup {
        minor: 0,
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(
        i32::from_be_bytes(msg[..4].try_into().unwrap()) as usize,
        msg.len()
    );
    assert_eq!(wire::parse_startup_frame(&msg[4..]).unwrap(), want);
    let mut r = &msg[..];
    let via_reader = block_on(wire::read_startup_frame(&mut r, usize::MAX)).unwrap();
    assert_eq!(via_reader, want);
}
