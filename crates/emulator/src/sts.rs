//! The STS actions (`GetCallerIdentity`, `AssumeRole`), AWS Query with XML responses in the STS
//! namespace, or for `GetCallerIdentity` and errors JSON when the caller asks for it (as
//! identity-token verifiers do). `AssumeRole` mints temporary keys the emulator then accepts
//! for every service.

use rand::Rng;
use time::{Duration, OffsetDateTime};

use crate::api::iso8601;
use crate::error::ApiError;
use crate::identity::{self, Principal};
use crate::state::{State, TempSession};
use crate::validate::Params;
use crate::{xml, AccessKey, ACCOUNT_ID};

/// The STS API version; a Query request naming it is routed here.
pub(crate) const API_VERSION: &str = "2011-06-15";
/// `AssumeRole` `DurationSeconds` bounds and default.
const MIN_DURATION: i64 = 900;
const MAX_DURATION: i64 = 43200;
const DEFAULT_DURATION: i64 = 3600;

/// Content type of STS's JSON answers (`Accept: application/json`).
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json";

/// Routes a signed STS request to its action and returns the success document and its content
/// type: JSON for `GetCallerIdentity` when `json` (the caller accepts `application/json`),
/// XML otherwise (`AssumeRole` always answers XML here).
pub(crate) fn dispatch(
    state: &State,
    key: &AccessKey,
    params: &Params,
    request_id: &str,
    json: bool,
) -> Result<(String, &'static str), ApiError> {
    let action = params.get("Action");
    let result = match action {
        Some("GetCallerIdentity") => {
            let who = caller_identity(state, key);
            Ok(if json {
                (who.json(request_id), JSON_CONTENT_TYPE)
            } else {
                (who.xml(request_id), "text/xml")
            })
        }
        Some("AssumeRole") => assume_role(state, key, params, request_id).map(|b| (b, "text/xml")),
        Some(other) => Err(ApiError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version {API_VERSION}"),
        )),
        None => Err(ApiError::new(
            400,
            "MissingAction",
            "The request must contain the parameter Action",
        )),
    };
    tracing::debug!(
        action = ?action.unwrap_or_default(),
        role = ?params.get("RoleArn").unwrap_or_default(),
        outcome = match &result { Ok(_) => "ok", Err(e) => e.code.as_str() },
        "STS emulator call"
    );
    result
}

fn success(action: &str, body: &str, request_id: &str) -> String {
    xml::success_in(xml::STS_NAMESPACE, action, body, request_id)
}

fn validation(message: String) -> ApiError {
    ApiError::new(400, "ValidationError", message)
}

/// Why: what `GetCallerIdentity` answers about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallerIdentity {
    pub(crate) account: String,
    pub(crate) arn: String,
    /// `AIDA…` for an IAM user, `AROA…:SESSION` for an assumed role.
    pub(crate) user_id: String,
}

impl CallerIdentity {
    fn xml(&self, request_id: &str) -> String {
        let body = format!(
            "{}{}{}",
            xml::element("Arn", &self.arn),
            xml::element("UserId", &self.user_id),
            xml::element("Account", &self.account),
        );
        success("GetCallerIdentity", &body, request_id)
    }

    /// STS's JSON shape (what aws-iam-authenticator and Vault read).
    fn json(&self, request_id: &str) -> String {
        serde_json::json!({
            "GetCallerIdentityResponse": {
                "GetCallerIdentityResult": {
                    "Account": self.account,
                    "Arn": self.arn,
                    "UserId": self.user_id,
                },
                "ResponseMetadata": { "RequestId": request_id },
            }
        })
        .to_string()
    }
}

/// STS's JSON error document: `{"Error":{"Code","Message","Type"},"RequestId"}`.
pub(crate) fn json_error(err: &ApiError, request_id: &str) -> String {
    serde_json::json!({
        "Error": {
            "Code": err.code,
            "Message": err.message,
            "Type": err.fault_type(),
        },
        "RequestId": request_id,
    })
    .to_string()
}

/// Who `key` is: its ARN, account and unique id. An assumed role's unique id is the one its
/// session was minted with (a role re-created since keeps old sessions on the old id).
pub(crate) fn caller_identity(state: &State, key: &AccessKey) -> CallerIdentity {
    let (user_id, account) = match identity::principal(&key.arn) {
        Principal::User { account, .. } => (state.unique_id("AIDA", &key.arn), account),
        Principal::AssumedRole {
            account,
            role,
            session,
        } => {
            let role_id = state
                .session(&key.access_key_id)
                .map(|s| s.role_id)
                .unwrap_or_else(|| state.unique_id("AROA", &identity::role_seed(&account, &role)));
            (format!("{role_id}:{session}"), account)
        }
        Principal::Other => (
            state.unique_id("AIDA", &key.arn),
            identity::account_of(&key.arn)
                .unwrap_or(ACCOUNT_ID)
                .to_owned(),
        ),
    };
    CallerIdentity {
        account,
        arn: key.arn.clone(),
        user_id,
    }
}

fn check_chars(
    name: &str,
    value: &str,
    min: usize,
    max: usize,
    extra: &str,
) -> Result<(), ApiError> {
    let len = value.chars().count();
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || extra.contains(c);
    if !(min..=max).contains(&len) || !value.chars().all(ok_char) {
        return Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{name}' failed to satisfy \
             constraint: Member must have length between {min} and {max} and match the pattern \
             [\\w{extra}]*"
        )));
    }
    Ok(())
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

fn assume_role(
    state: &State,
    key: &AccessKey,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    let required = |name: &str, member: &str| {
        params.get(name).ok_or_else(|| {
            validation(format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy \
                 constraint: Member must not be null"
            ))
        })
    };
    let role_arn = required("RoleArn", "roleArn")?;
    let session_name = required("RoleSessionName", "roleSessionName")?;
    if !(20..=2048).contains(&role_arn.len()) {
        return Err(validation(format!(
            "1 validation error detected: Value '{role_arn}' at 'roleArn' failed to satisfy \
             constraint: Member must have length between 20 and 2048"
        )));
    }
    check_chars("roleSessionName", session_name, 2, 64, "+=,.@-")?;
    let external_id = params.get("ExternalId");
    if let Some(e) = external_id {
        check_chars("externalId", e, 2, 1224, "+=,.@:/-")?;
    }
    let duration = match params.get("DurationSeconds") {
        None => DEFAULT_DURATION,
        Some(s) => {
            let d = s.trim().parse::<i64>().map_err(|_| {
                validation(format!(
                    "1 validation error detected: Value '{s}' at 'durationSeconds' failed to \
                     satisfy constraint: Member must be an integer"
                ))
            })?;
            if !(MIN_DURATION..=MAX_DURATION).contains(&d) {
                return Err(validation(format!(
                    "1 validation error detected: Value '{d}' at 'durationSeconds' failed to \
                     satisfy constraint: Member must have value between {MIN_DURATION} and \
                     {MAX_DURATION}"
                )));
            }
            d
        }
    };

    identity::authorize(key, "sts:AssumeRole", role_arn)?;
    // AWS answers an unknown role and a trust-policy mismatch (ExternalId) alike.
    let role = state
        .config
        .roles
        .iter()
        .find(|r| r.arn == role_arn)
        .filter(|r| r.external_id.is_none() || r.external_id.as_deref() == external_id)
        .ok_or_else(|| identity::access_denied(key, "sts:AssumeRole", role_arn))?;
    let role_name = identity::role_name(&role.arn)
        .ok_or_else(|| identity::access_denied(key, "sts:AssumeRole", role_arn))?;
    let account = identity::account_of(&role.arn).unwrap_or(ACCOUNT_ID);

    let assumed_arn = format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}");
    let role_id = state.unique_id("AROA", &identity::role_seed(account, role_name));
    const KEY_ID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut temp = AccessKey::new(
        format!("ASIA{}", random_string(KEY_ID, 16)),
        random_string(SECRET, 40),
    );
    temp.arn = assumed_arn.clone();
    temp.session_token = Some(random_string(SECRET, 256));
    let expires = OffsetDateTime::now_utc() + Duration::seconds(duration);
    let expires = expires.replace_nanosecond(0).unwrap_or(expires);

    let body = format!(
        "<AssumedRoleUser>{}{}</AssumedRoleUser><Credentials>{}{}{}{}</Credentials>",
        xml::element("AssumedRoleId", &format!("{role_id}:{session_name}")),
        xml::element("Arn", &assumed_arn),
        xml::element("AccessKeyId", &temp.access_key_id),
        xml::element("SecretAccessKey", &temp.secret_access_key),
        xml::element(
            "SessionToken",
            temp.session_token.as_deref().unwrap_or_default()
        ),
        xml::element("Expiration", &iso8601(expires)?),
    );
    tracing::debug!(access_key_id = %temp.access_key_id, arn = %assumed_arn, "STS emulator minted temporary credentials");
    state.add_session(TempSession {
        key: temp,
        expires,
        role_id,
    });
    Ok(success("AssumeRole", &body, request_id))
}
