//! What the proxy reads of a JWT before verifying it, from arbitrary text: never panics,
//! and the readers agree with the token's own segments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redshift_tokens::jwt::{claim, claimed_issuer, raw_algorithm};
use redshift_tokens::TokenKind;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = TokenKind::of(text);
    let _ = claimed_issuer(text);
    let _ = raw_algorithm(text);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        for path in ["a", "a.b", "kubernetes.io.namespace", "", ".", "a..b"] {
            let _ = claim(&value, path);
        }
    }
    // A segment of three with no JWT shape is no JWT.
    if !text.starts_with("ey") {
        assert_ne!(TokenKind::of(text), Some(TokenKind::Jwt));
    }
});
