//! What a client sends during SCRAM client authentication: `parse_sasl_initial_response`,
//! checked to re-encode to exactly its input (unless the length word was -1, "no data").
#![no_main]

use libfuzzer_sys::fuzz_target;
use redshift_wire as wire;

fuzz_target!(|data: &[u8]| {
    let Ok((mechanism, initial)) = wire::parse_sasl_initial_response(data) else {
        return;
    };
    assert!(!mechanism.contains('\0'));
    let reencoded = wire::sasl_initial_response(&mechanism, &initial);
    let body = &reencoded[5..];
    let len_at = mechanism.len() + 1;
    let len = i32::from_be_bytes(data[len_at..len_at + 4].try_into().unwrap());
    if len == -1 {
        assert!(initial.is_empty());
    } else {
        assert_eq!(body, data, "re-encoding differs from the input");
    }
});
