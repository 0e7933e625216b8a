//! The Redshift Serverless actions (`GetCredentials`, `GetWorkgroup`): AWS JSON 1.1, operation
//! named by `X-Amz-Target: RedshiftServerless.<Operation>`, timestamps as epoch seconds.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::api::{self, REFRESH_AHEAD};
use crate::error::ApiError;
use crate::identity::authorize;
use crate::state::State;
use crate::validate::{validate_name, MAX_DURATION, MIN_DURATION};
use crate::{AccessKey, ACCOUNT_ID};

/// Prefix of `X-Amz-Target` that routes a request here.
pub(crate) const TARGET_PREFIX: &str = "RedshiftServerless.";
/// Content type of JSON 1.1 requests and responses.
pub(crate) const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Routes a signed Serverless request to its operation and returns the success JSON body.
pub(crate) async fn dispatch(
    state: &State,
    key: &AccessKey,
    operation: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let result = match operation {
        "GetCredentials" => get_credentials(state, key, &parse(body)?).await,
        "GetWorkgroup" => get_workgroup(state, key, &parse(body)?),
        other => Err(ApiError::new(
            400,
            "UnknownOperationException",
            format!("Unknown operation {TARGET_PREFIX}{other}."),
        )),
    };
    tracing::debug!(
        action = operation,
        outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        },
        "Redshift Serverless emulator call"
    );
    result
}

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "ValidationException", message)
}

fn serialization(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "SerializationException", message)
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "ResourceNotFoundException", message)
}

/// The request document: a JSON object (an empty body counts as `{}`).
fn parse(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(serialization("The request body must be a JSON object.")),
        Err(e) => Err(serialization(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

fn string<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(serialization(format!("{name} must be a string."))),
    }
}

/// `workgroupName`: 3..64 characters of `[a-z0-9-]`.
fn check_workgroup_name(name: &str) -> Result<(), ApiError> {
    let ok = (3..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'workgroupName' failed to satisfy \
             constraint: Member must have length between 3 and 64 and match the pattern \
             ^[a-z0-9-]+$"
        )));
    }
    Ok(())
}

/// A stable UUID-shaped workgroup id derived from the name.
fn workgroup_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(name.as_bytes()));
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn workgroup_arn(state: &State, name: &str) -> String {
    format!(
        "arn:aws:redshift-serverless:{}:{ACCOUNT_ID}:workgroup/{}",
        state.config.region,
        workgroup_id(name)
    )
}

/// Epoch seconds with milliseconds, as AWS JSON protocols render timestamps.
fn epoch(t: OffsetDateTime) -> Value {
    let secs = t.unix_timestamp() as f64 + f64::from(t.millisecond()) / 1000.0;
    serde_json::Number::from_f64(secs).map_or(Value::Null, Value::Number)
}

async fn get_credentials(
    state: &State,
    key: &AccessKey,
    req: &Map<String, Value>,
) -> Result<Value, ApiError> {
    const ACTION: &str = "GetCredentials";
    let workgroup = match (
        string(req, "customDomainName")?,
        string(req, "workgroupName")?,
    ) {
        (Some(domain), _) => state
            .custom_domain(domain)
            .filter(|w| state.workgroup(w).is_some())
            .ok_or_else(|| not_found(format!("Custom domain association for {domain} not found.")))?
            .to_owned(),
        (None, Some(name)) => name.to_owned(),
        (None, None) => {
            return Err(validation(
                "Either workgroupName or customDomainName must be specified.",
            ))
        }
    };
    check_workgroup_name(&workgroup)?;
    if let Some(db) = string(req, "dbName")? {
        validate_name("dbName", db, false).map_err(|e| validation(e.message))?;
    }
    // Not documented by AWS; 900 like the provisioned-cluster credential APIs.
    let duration = match req.get("durationSeconds") {
        None | Some(Value::Null) => MIN_DURATION,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| serialization("durationSeconds must be an integer."))?,
    };
    if !(MIN_DURATION..=MAX_DURATION).contains(&duration) {
        return Err(validation(format!(
            "durationSeconds must be between {MIN_DURATION} and {MAX_DURATION} seconds, got \
             {duration}."
        )));
    }
    authorize(
        key,
        "redshift-serverless:GetCredentials",
        &workgroup_arn(state, &workgroup),
    )?;
    let entry = state
        .workgroup(&workgroup)
        .ok_or_else(|| not_found(format!("Workgroup {workgroup} does not exist.")))?;
    let preq = api::iam_provision_request(state, key, ACTION)?;
    let db_user = preq.login_role.clone();
    let minted = api::mint(
        state,
        entry.provisioner.as_ref(),
        ACTION,
        &workgroup,
        preq,
        duration,
    )
    .await?;
    Ok(json!({
        "dbUser": db_user,
        "dbPassword": minted.password,
        "expiration": epoch(minted.expiration),
        "nextRefreshTime": epoch(minted.expiration - REFRESH_AHEAD),
    }))
}

fn get_workgroup(
    state: &State,
    key: &AccessKey,
    req: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let name = string(req, "workgroupName")?.ok_or_else(|| {
        validation(
            "1 validation error detected: Value null at 'workgroupName' failed to satisfy \
             constraint: Member must not be null",
        )
    })?;
    check_workgroup_name(name)?;
    let arn = workgroup_arn(state, name);
    authorize(key, "redshift-serverless:GetWorkgroup", &arn)?;
    let w = &state
        .workgroup(name)
        .ok_or_else(|| not_found(format!("Workgroup {name} does not exist.")))?
        .workgroup;
    let domains: Vec<&str> = state
        .config
        .custom_domains
        .iter()
        .filter(|(_, id)| *id == w.name)
        .map(|(d, _)| d.as_str())
        .collect();
    let mut workgroup = json!({
        "workgroupId": workgroup_id(&w.name),
        "workgroupArn": arn,
        "workgroupName": w.name,
        "namespaceName": format!("{}-namespace", w.name),
        "baseCapacity": 8,
        "enhancedVpcRouting": false,
        "securityGroupIds": [],
        "subnetIds": [],
        "status": "AVAILABLE",
        "endpoint": {"address": w.host, "port": w.port, "vpcEndpoints": []},
        "publiclyAccessible": false,
        "creationDate": "2024-01-01T00:00:00Z",
        "port": w.port,
    });
    if let (Some(d), Some(obj)) = (domains.first(), workgroup.as_object_mut()) {
        obj.insert("customDomainName".into(), json!(d));
    }
    Ok(json!({ "workgroup": workgroup }))
}

/// The JSON 1.1 error code for an error raised by code shared with the Query protocols
/// (signature checks, faults, authorization), as AWS JSON services name them.
pub(crate) fn json_code(code: &str) -> &str {
    match code {
        "SignatureDoesNotMatch" => "InvalidSignatureException",
        "InvalidClientTokenId" => "UnrecognizedClientException",
        "IncompleteSignature" => "IncompleteSignatureException",
        "MissingAuthenticationToken" => "MissingAuthenticationTokenException",
        "ExpiredToken" => "ExpiredTokenException",
        "AccessDenied" => "AccessDeniedException",
        "Throttling" => "ThrottlingException",
        "InternalFailure" => "InternalServerException",
        other => other,
    }
}

/// Renders an error as the JSON 1.1 body `{"__type": ..., "message": ...}`.
pub(crate) fn error_body(err: &ApiError) -> String {
    json!({ "__type": json_code(&err.code), "message": err.message }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workgroup_names_are_3_to_64_lowercase_letters_digits_and_hyphens() {
        assert!(check_workgroup_name("wg-1").is_ok());
        let too_long = "a".repeat(65);
        for (case, name) in [
            ("too short", "ab"),
            ("capitals", "WG1"),
            ("underscore", "wg_1"),
            ("65 characters", too_long.as_str()),
        ] {
            let code = check_workgroup_name(name).map_err(|e| e.code);
            assert_eq!(code, Err("ValidationException".into()), "{case}");
        }
    }

    #[test]
    fn workgroup_ids_are_uuid_shaped() {
        let id = workgroup_id("wg1");
        assert_eq!(
            id.split('-').map(str::len).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
    }

    #[test]
    fn error_bodies_carry_the_json_exception_type() {
        assert_eq!(
            error_body(&ApiError::new(403, "AccessDenied", "no")),
            r#"{"__type":"AccessDeniedException","message":"no"}"#
        );
    }

    #[test]
    fn an_empty_body_is_an_empty_object() {
        assert_eq!(parse(b"").unwrap().len(), 0);
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_a_serialization_error() {
        for (case, body) in [("array", &b"[1]"[..]), ("truncated", b"{")] {
            let code = parse(body).map_err(|e| e.code);
            assert_eq!(
                code.err().as_deref(),
                Some("SerializationException"),
                "{case}"
            );
        }
    }
}
