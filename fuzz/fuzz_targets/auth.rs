//! What an upstream server sends while the proxy logs in: `parse_auth_request`
//! (codes 0-14, SASL, Redshift's code 13), `parse_backend_key_data`,
//! `parse_error_fields`, and the `error_response` -> `parse_error_fields` round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redshift_wire as wire;
use wire::AuthRequest;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => auth_request(rest),
        1 => {
            // Steer towards the codes with a payload: the code word comes from `mode`.
            let mut b = i32::from(mode / 5 % 16).to_be_bytes().to_vec();
            b.extend_from_slice(rest);
            auth_request(&b);
        }
        2 => backend_key_data(rest),
        3 => {
            let f = wire::parse_error_fields(rest);
            for s in [&f.severity, &f.code, &f.message] {
                assert!(!s.contains('\0'));
            }
        }
        _ => error_round_trip(rest),
    }
});

fn auth_request(b: &[u8]) {
    let Ok(req) = wire::parse_auth_request(b) else {
        return;
    };
    let code = i32::from_be_bytes(b[..4].try_into().unwrap());
    let rest = &b[4..];
    match req {
        AuthRequest::Ok => assert_eq!(code, 0),
        AuthRequest::Cleartext => assert_eq!(code, 3),
        AuthRequest::Md5 { salt } => assert_eq!((code, &salt[..]), (5, rest)),
        AuthRequest::Sasl { mechanisms } => {
            assert_eq!(code, 10);
            let mut enc = Vec::new();
            for m in &mechanisms {
                assert!(!m.is_empty() && !m.contains('\0'));
                enc.extend_from_slice(m.as_bytes());
                enc.push(0);
            }
            enc.push(0);
            assert!(rest.starts_with(&enc));
        }
        AuthRequest::SaslContinue(d) => assert_eq!((code, &d[..]), (11, rest)),
        AuthRequest::SaslFinal(d) => assert_eq!((code, &d[..]), (12, rest)),
        AuthRequest::RedshiftDigest {
            algorithm,
            salt,
            server_nonce,
        } => {
            assert_eq!(code, 13);
            let mut enc = algorithm.to_be_bytes().to_vec();
            enc.extend_from_slice(&(salt.len() as i32).to_be_bytes());
            enc.extend_from_slice(&salt);
            enc.extend_from_slice(&(server_nonce.len() as i32).to_be_bytes());
            enc.extend_from_slice(&server_nonce);
            assert!(rest.starts_with(&enc));
        }
        AuthRequest::IdpToken => assert_eq!(code, 14),
        AuthRequest::Unsupported(c) => {
            assert_eq!(c, code);
            assert!(![0, 3, 5, 10, 11, 12, 13, 14].contains(&c));
        }
    }
}

fn backend_key_data(b: &[u8]) {
    if let Ok((pid, secret)) = wire::parse_backend_key_data(b) {
        assert!((1..=256).contains(&secret.len()));
        assert_eq!(&wire::backend_key_data(pid, &secret)[5..], b);
    }
}

/// Whatever the proxy composes, it reads back (less the NUL bytes it strips).
fn error_round_trip(b: &[u8]) {
    let text = String::from_utf8_lossy(b);
    let mut parts = text.split('\x01');
    let mut next = || parts.next().unwrap_or("");
    let (severity, code, message) = (next(), next(), next());
    let hint = Some(next()).filter(|h| !h.is_empty());
    let e = wire::error_response(severity, code, message, hint);
    assert_eq!(e[0], b'E');
    assert_eq!(
        i32::from_be_bytes(e[1..5].try_into().unwrap()) as usize,
        e.len() - 1
    );
    let f = wire::parse_error_fields(&e[5..]);
    let strip = |s: &str| s.replace('\0', "");
    assert_eq!(f.severity, strip(severity));
    assert_eq!(f.code, strip(code));
    assert_eq!(f.message, strip(message));
    assert_eq!(f.hint, hint.map(strip));
    assert_eq!(f.detail, None);
}
