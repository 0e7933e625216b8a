//! AWS identity tokens from a client, arbitrary: parsing never panics, and whatever it
//! accepts is rebuilt for an allowed STS host only, with only allowed parameters, each once,
//! and a rebuilt token parses to the same request (the rebuild is a fixed point).
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use redshift_tokens::aws::{parse, Endpoints, PREFIX};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(endpoints) = Endpoints::new("eu-west-1", None) else {
        return;
    };
    let now = time::OffsetDateTime::from_unix_timestamp(1_780_000_100).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    // Both the raw text as a token and the text as the URL inside one.
    let wrapped = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    );
    for token in [text.to_owned(), wrapped] {
        let Ok(p) = parse(&token, &endpoints, now) else {
            continue;
        };
        let url = url::Url::parse(&p.url).expect("the rebuilt URL parses");
        assert_eq!(url.scheme(), "https");
        assert!(
            ["sts.eu-west-1.amazonaws.com", "sts-fips.eu-west-1.amazonaws.com", "sts.eu-west-1.api.aws", "sts.amazonaws.com"]
                .contains(&url.host_str().unwrap_or_default()),
            "{}",
            p.url
        );
        let names: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a parameter twice: {}", p.url);
        assert!(names.iter().all(|n| n == "Action" || n == "Version" || n.starts_with("X-Amz-")));
        let again = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&p.url)
        );
        let q = parse(&again, &endpoints, now).expect("a rebuilt token parses");
        assert_eq!(q, p);
    }
});
