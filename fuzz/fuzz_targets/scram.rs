//! The upstream SCRAM-SHA-256 client (postgres-protocol's `ScramSha256`, as
//! `src/upstream.rs` drives it) fed arbitrary server-first and server-final messages:
//! a malicious or broken cluster must get an error, never a crash or a hang.
//!
//! Input: `[pw_len][password][first_len: u16 LE][server-first][server-final]`.
//! Every `%N` in the server-first is replaced by the client's random nonce, so the
//! fuzzer can get past the nonce check and reach salt, iteration and proof handling.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use redshift_wire::{self as wire, AuthRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&pw_len, rest)) = data.split_first() else {
        return;
    };
    let (password, rest) = rest.split_at(usize::from(pw_len % 32).min(rest.len()));
    if rest.len() < 2 {
        return;
    }
    let first_len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
    let (first, last) = rest[2..].split_at(first_len.min(rest.len() - 2));

    let mut s = ScramSha256::new(password, ChannelBinding::unsupported());
    let client_first = s.message().to_vec();
    let nonce = &client_first[client_first.windows(2).position(|w| w == b"r=").unwrap() + 2..];
    let first = replace(first, b"%N", nonce);

    // The bytes reach ScramSha256 through the proxy's own `R` parser, as upstream.rs does.
    let cont = framed(11, &first);
    let Ok(AuthRequest::SaslContinue(first)) = wire::parse_auth_request(&cont) else {
        panic!("SASLContinue not parsed back");
    };
    if s.update(&first).is_err() {
        return;
    }
    let _client_final = s.message();
    let fin = framed(12, last);
    let Ok(AuthRequest::SaslFinal(last)) = wire::parse_auth_request(&fin) else {
        panic!("SASLFinal not parsed back");
    };
    // A forged server signature must never verify.
    assert!(s.finish(&last).is_err());
});

fn framed(code: i32, payload: &[u8]) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(payload);
    b
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len() + with.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}
