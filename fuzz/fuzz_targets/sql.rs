//! The pool's SQL lexer on arbitrary text: it never panics, and it never invents effects
//! for text without a letter (a `#name` word, a Redshift temp table, is the one exception).
#![no_main]

use libfuzzer_sys::fuzz_target;
use redshift_wire::sql as classify;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let effects = classify::classify(sql);
    if !sql.chars().any(|c| c.is_ascii_alphabetic() || c == '#') {
        assert!(effects.is_empty(), "{sql:?} -> {effects:?}");
    }
});
