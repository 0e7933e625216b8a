//! Caller identities: the principal behind a key's ARN, the IAM-mapped database user derived
//! from it, the groups its role grants, and IAM deny checks.

use crate::error::ApiError;
use crate::state::State;
use crate::AccessKey;

/// Why: the kinds of caller the IAM-mapped credential APIs distinguish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// `arn:aws:iam::ACCOUNT:user[/PATH]/NAME`.
    User { account: String, name: String },
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    AssumedRole {
        account: String,
        role: String,
        session: String,
    },
    /// Anything else (root, federated users, malformed ARNs).
    Other,
}

/// Splits a caller ARN into the principal it names.
pub(crate) fn principal(arn: &str) -> Principal {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", _partition, service, _region, account, resource] = parts[..] else {
        return Principal::Other;
    };
    let segments: Vec<&str> = resource.split('/').collect();
    match (service, segments.as_slice()) {
        ("iam", ["user", .., name]) if !name.is_empty() => Principal::User {
            account: account.to_owned(),
            name: (*name).to_owned(),
        },
        ("sts", ["assumed-role", role, session]) if !role.is_empty() && !session.is_empty() => {
            Principal::AssumedRole {
                account: account.to_owned(),
                role: (*role).to_owned(),
                session: (*session).to_owned(),
            }
        }
        _ => Principal::Other,
    }
}

/// The role name of a role ARN (`arn:aws:iam::ACCOUNT:role[/PATH]/NAME` → `NAME`).
pub(crate) fn role_name(role_arn: &str) -> Option<&str> {
    let resource = role_arn.splitn(6, ':').nth(5)?;
    let rest = resource.strip_prefix("role/")?;
    rest.rsplit('/').next().filter(|n| !n.is_empty())
}

/// The account of an ARN (its fifth field).
pub(crate) fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The database user Redshift maps an IAM identity to, exactly as AWS does:
/// IAM user `NAME` → `IAM:NAME`, assumed role `ROLE` → `IAMR:ROLE`.
pub(crate) fn iam_db_user(key: &AccessKey, action: &str) -> Result<String, ApiError> {
    match principal(&key.arn) {
        Principal::User { name, .. } => Ok(format!("IAM:{name}")),
        Principal::AssumedRole { role, .. } => Ok(format!("IAMR:{role}")),
        Principal::Other => Err(ApiError::new(
            400,
            "UnsupportedOperation",
            format!(
                "{action} supports IAM users and assumed roles only, not {}.",
                key.arn
            ),
        )),
    }
}

/// Groups the caller's principal tags grant: those of the `EmulatedRole` it assumed (matched
/// by role name, as the assumed-role ARN carries no path), none for IAM users.
pub(crate) fn iam_groups(state: &State, key: &AccessKey) -> Vec<String> {
    let Principal::AssumedRole { role, .. } = principal(&key.arn) else {
        return Vec::new();
    };
    state
        .config
        .roles
        .iter()
        .find(|r| role_name(&r.arn) == Some(role.as_str()))
        .map(|r| r.db_groups.clone())
        .unwrap_or_default()
}

/// Denies `action` (`service:Operation`) on `resource` if the key's policy says so.
pub(crate) fn authorize(key: &AccessKey, action: &str, resource: &str) -> Result<(), ApiError> {
    let service = action.split_once(':').map(|(s, _)| s).unwrap_or_default();
    let denied = key.denied_actions.iter().any(|d| {
        d == "*"
            || d.eq_ignore_ascii_case(action)
            || d.strip_suffix(":*")
                .is_some_and(|s| s.eq_ignore_ascii_case(service))
    });
    if denied {
        return Err(access_denied(key, action, resource));
    }
    Ok(())
}

/// The `AccessDenied` error AWS gives when `key` may not perform `action` on `resource`.
pub(crate) fn access_denied(key: &AccessKey, action: &str, resource: &str) -> ApiError {
    ApiError::new(
        403,
        "AccessDenied",
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource}",
            key.arn
        ),
    )
}

/// What a role's unique id is derived from: its account and name (IAM ids do not depend on
/// the path, and an assumed-role ARN carries none).
pub(crate) fn role_seed(account: &str, role_name: &str) -> String {
    format!("{account}/{role_name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::unique_id;

    #[test]
    fn iam_db_user_maps_users_to_iam_and_assumed_roles_to_iamr() {
        for (case, arn, db_user) in [
            (
                "user",
                "arn:aws:iam::123456789012:user/emulator",
                Ok("IAM:emulator"),
            ),
            (
                "user with a path",
                "arn:aws:iam::123456789012:user/division/team/alice",
                Ok("IAM:alice"),
            ),
            (
                "assumed role",
                "arn:aws:sts::123456789012:assumed-role/analyst/sess-1",
                Ok("IAMR:analyst"),
            ),
            (
                "account root",
                "arn:aws:iam::123456789012:root",
                Err("UnsupportedOperation"),
            ),
            ("not an ARN", "nonsense", Err("UnsupportedOperation")),
        ] {
            let mut key = AccessKey::new("a", "b");
            key.arn = arn.to_owned();
            let got = iam_db_user(&key, "X");
            assert_eq!(
                got.as_deref().map_err(|e| e.code.as_str()),
                db_user,
                "{case}"
            );
        }
    }

    #[test]
    fn role_name_is_the_last_segment_of_a_role_arn_only() {
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/path/analyst"),
            Some("analyst")
        );
        assert_eq!(role_name("arn:aws:iam::123456789012:user/x"), None);
    }

    #[test]
    fn account_of_reads_the_account_field() {
        assert_eq!(
            account_of("arn:aws:iam::210987654321:role/x"),
            Some("210987654321")
        );
    }

    #[test]
    fn denied_actions_match_exactly_or_by_service_wildcard() {
        for (case, denied, action, allowed) in [
            (
                "service wildcard",
                &["sts:*", "redshift:JoinGroup"][..],
                "sts:AssumeRole",
                false,
            ),
            (
                "exact action",
                &["sts:*", "redshift:JoinGroup"],
                "redshift:JoinGroup",
                false,
            ),
            (
                "other action",
                &["sts:*", "redshift:JoinGroup"],
                "redshift:GetClusterCredentials",
                true,
            ),
            (
                "other service",
                &["sts:*", "redshift:JoinGroup"],
                "redshift-serverless:GetCredentials",
                true,
            ),
            (
                "wildcard is not a prefix match",
                &["redshift:*"],
                "redshift-serverless:GetCredentials",
                true,
            ),
            (
                "wildcard of the service",
                &["redshift:*"],
                "redshift:DescribeClusters",
                false,
            ),
        ] {
            let mut key = AccessKey::new("a", "b");
            key.denied_actions = denied.iter().map(|d| d.to_string()).collect();
            assert_eq!(authorize(&key, action, "r").is_ok(), allowed, "{case}");
        }
    }

    #[test]
    fn unique_id_is_21_characters_and_stable_per_seed() {
        let id = unique_id("AROA", "x");
        assert_eq!(id.len(), 21);
        assert_eq!(id, unique_id("AROA", "x"));
    }
}
