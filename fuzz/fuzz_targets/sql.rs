//! The pool's SQL lexer on arbitrary text: it never panics, and splitting never invents
//! effects for text that has no statement keyword at all.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redshift_iam_proxy_fuzz::classify;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let effects = classify::classify(sql);
    if !sql.chars().any(|c| c.is_ascii_alphabetic()) {
        assert!(effects.is_empty(), "{sql:?} -> {effects:?}");
    }
});
