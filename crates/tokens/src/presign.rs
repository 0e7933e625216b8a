//! Making an AWS identity token: a presigned `sts:GetCallerIdentity` URL (SigV4 in the
//! query string, `aws-sigv4`) that signs the audience header, base64url-encoded.

use crate::aws::{AUDIENCE_HEADER, PREFIX};
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use std::time::{Duration, SystemTime};

/// The token for a presigned GetCallerIdentity at `endpoint` with `creds`, signed at `now`.
pub fn presign(
    endpoint: &str,
    region: &str,
    server_id: &str,
    creds: aws_credential_types::Credentials,
    expires: Duration,
    now: SystemTime,
) -> Result<String, String> {
    let base = url::Url::parse(endpoint).map_err(|e| format!("endpoint {endpoint:?}: {e}"))?;
    let host = match (base.host_str(), base.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(format!("endpoint {endpoint:?} has no host")),
    };
    let url = format!(
        "{}://{host}/?Action=GetCallerIdentity&Version=2011-06-15",
        base.scheme()
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let identity = creds.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let headers = [("host", host.as_str()), (AUDIENCE_HEADER, server_id)];
    let signable = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("signing: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    let mut request = http::Request::get(&url)
        .body(())
        .map_err(|e| format!("signing: {e}"))?;
    instructions.apply_to_request_http1x(&mut request);
    let signed = request.uri().to_string();
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed)
    ))
}
