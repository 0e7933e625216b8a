//! Who maps to whom: turns the user name a client sends into a Redshift identity.
//!
//! Pure policy, no I/O: the first `[[users]]` rule whose `client_user` equals the
//! client's name (or is `*`) decides DbUser, DbGroups and AutoCreate.

use crate::config::UserRule;
use crate::credentials::RoleSpec;

/// The Redshift identity a client user is mapped to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub db_user: String,
    /// Sorted and de-duplicated, so equal sets make equal cache keys.
    pub db_groups: Vec<String>,
    pub auto_create: bool,
    /// The IAM role to act as for this user's credential calls, if any.
    pub role: Option<RoleSpec>,
}

/// The ordered rule list from the configuration.
#[derive(Debug, Clone)]
pub struct UserMap {
    rules: Vec<UserRule>,
}

impl UserMap {
    pub fn new(rules: Vec<UserRule>) -> Self {
        Self { rules }
    }

    /// The identity for `client_user`, or `None` when no rule matches.
    pub fn resolve(&self, client_user: &str) -> Option<Identity> {
        let rule = self
            .rules
            .iter()
            .find(|r| r.client_user == client_user || r.client_user == "*")?;
        let mut db_groups = rule.db_groups.clone();
        db_groups.sort();
        db_groups.dedup();
        Some(Identity {
            db_user: rule
                .db_user
                .clone()
                .unwrap_or_else(|| client_user.to_owned()),
            db_groups,
            auto_create: rule.auto_create,
            role: rule.role_arn.as_ref().map(|arn| RoleSpec {
                arn: arn.clone(),
                external_id: rule.external_id.clone(),
                session_name: rule
                    .session_name
                    .clone()
                    .unwrap_or_else(|| "redshift-iam-proxy".to_owned()),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(client: &str, db: Option<&str>, groups: &[&str]) -> UserRule {
        UserRule {
            client_user: client.into(),
            db_user: db.map(Into::into),
            db_groups: groups.iter().map(|g| g.to_string()).collect(),
            auto_create: false,
            role_arn: None,
            external_id: None,
            session_name: None,
        }
    }

    #[test]
    fn first_match_wins_and_wildcard_keeps_the_name() {
        let m = UserMap::new(vec![
            rule("alice", Some("alice_db"), &["sales", "analysts", "sales"]),
            rule("*", None, &[]),
        ]);
        let a = m.resolve("alice").unwrap();
        assert_eq!(a.db_user, "alice_db");
        assert_eq!(a.db_groups, vec!["analysts", "sales"]);
        assert_eq!(m.resolve("bob").unwrap().db_user, "bob");
    }

    #[test]
    fn no_rule_means_no_identity() {
        let m = UserMap::new(vec![rule("alice", None, &[])]);
        assert_eq!(m.resolve("mallory"), None);
    }
}
