//! What the proxy reads of a JWT before `jsonwebtoken` verifies it: the issuer it claims
//! (to pick that issuer's keys), the algorithm it names (to say why it is refused), and
//! claim paths of verified claims. Nothing here judges a token.

use base64::Engine;

/// The `alg` a JWT header names, read without judging it (for the refusal's message).
pub fn raw_algorithm(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v["alg"].as_str().map(str::to_owned)
}

/// The `iss` a JWT claims (read only to pick the issuer whose keys check it).
pub fn claimed_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    claims["iss"].as_str().map(str::to_owned)
}

/// The value at a dotted claim path (`kubernetes.io.namespace`): at each level the longest
/// run of segments that is a key wins, since claim names may contain dots themselves.
pub fn claim<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let segments: Vec<&str> = path.split('.').collect();
    let mut node = claims;
    let mut i = 0;
    'levels: while i < segments.len() {
        let obj = node.as_object()?;
        for j in (i + 1..=segments.len()).rev() {
            if let Some(v) = obj.get(&segments[i..j].join(".")) {
                node = v;
                i = j;
                continue 'levels;
            }
        }
        return None;
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_paths_find_keys_that_contain_dots() {
        let c = json!({"kubernetes.io": {"namespace": "reporting", "serviceaccount": {"name": "etl"}}, "groups": ["a"]});
        assert_eq!(
            claim(&c, "kubernetes.io.namespace"),
            Some(&json!("reporting"))
        );
        assert_eq!(
            claim(&c, "kubernetes.io.serviceaccount.name"),
            Some(&json!("etl"))
        );
        assert_eq!(claim(&c, "groups"), Some(&json!(["a"])));
        assert_eq!(claim(&c, "kubernetes.io.nope"), None);
    }

    #[test]
    fn the_claimed_issuer_is_read_from_the_payload() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"iss":"https://i"}"#);
        assert_eq!(
            claimed_issuer(&format!("eyJ.{payload}.sig")).as_deref(),
            Some("https://i")
        );
        assert_eq!(claimed_issuer("garbage"), None);
    }
}
