//! Who maps to whom: turns a client into a Redshift identity.
//!
//! Pure policy, no I/O. The first matching `[[users]]` rule decides DbUser, DbGroups,
//! AutoCreate, the IAM role and the session defaults. A client that only typed a name is
//! matched by `client_user` (or `*`); a client that proved who it is with a token is
//! matched on its verified principal only (`principal`, `unique_id`, `claims`): the name
//! it typed is never trusted for that.

use crate::aws::credentials::RoleSpec;
use crate::client::identity::{oidc, Principal};
use crate::config::UserRule;
use crate::pool::params::Settings;

/// The Redshift identity a client is mapped to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub db_user: String,
    /// Sorted and de-duplicated, so equal sets make equal cache keys.
    pub db_groups: Vec<String>,
    pub auto_create: bool,
    /// The IAM role to act as for this user's credential calls, if any.
    pub role: Option<RoleSpec>,
}

/// A rule's outcome: the identity and the session defaults that come with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub identity: Identity,
    /// Session settings applied as if the client had sent them (`query_group`, …).
    pub defaults: Settings,
}

/// Why a verified principal maps to nobody (the client hears this, with 28000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMapping(pub String);

/// The ordered rule list from the configuration.
#[derive(Debug, Clone)]
pub struct UserMap {
    rules: Vec<UserRule>,
}

impl UserMap {
    pub fn new(rules: Vec<UserRule>) -> Self {
        Self { rules }
    }

    /// The identity for a client known only by the name it typed, or `None`.
    pub fn resolve(&self, client_user: &str) -> Option<Identity> {
        self.resolve_name(client_user).map(|m| m.identity)
    }

    /// The mapping for a client known only by the name it typed, or `None`.
    pub fn resolve_name(&self, client_user: &str) -> Option<Mapped> {
        let rule = self.rules.iter().find(|r| {
            !r.matches_principal() && (r.client_user == client_user || r.client_user == "*")
        })?;
        let db_user = rule
            .db_user
            .clone()
            .unwrap_or_else(|| client_user.to_owned());
        Some(mapped(rule, db_user, rule.db_groups.clone()))
    }

    /// The mapping for a verified principal: the first rule whose principal, unique id and
    /// claims all match.
    pub fn resolve_principal(&self, p: &Principal) -> Result<Mapped, NoMapping> {
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches_principal() || !matches(rule, p) {
                continue;
            }
            let db_user =
                db_user(rule, p).map_err(|e| NoMapping(format!("users[{i}].db_user: {e}")))?;
            let mut groups = rule.db_groups.clone();
            groups.extend(claim_groups(rule, p).map_err(|g| {
                NoMapping(format!(
                    "claim {:?} selects group {g:?}, which users[{i}].allowed_db_groups does not allow",
                    rule.db_groups_from_claim.as_deref().unwrap_or_default()
                ))
            })?);
            return Ok(mapped(rule, db_user, groups));
        }
        Err(NoMapping(format!(
            "no [[users]] rule matches principal {} (add a rule with principal = \"…\", unique_id or claims)",
            p.name()
        )))
    }
}

fn mapped(rule: &UserRule, db_user: String, mut db_groups: Vec<String>) -> Mapped {
    db_groups.sort();
    db_groups.dedup();
    let mut defaults = rule.session.clone();
    if let Some(q) = &rule.query_group {
        defaults.insert("query_group".into(), q.clone());
    }
    Mapped {
        identity: Identity {
            db_user,
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
        },
        defaults,
    }
}

/// Whether `p` satisfies the rule's principal glob, unique id and claims.
fn matches(rule: &UserRule, p: &Principal) -> bool {
    if let Some(glob) = &rule.principal {
        if !glob_match(glob, &p.name()) {
            return false;
        }
    }
    if let Some(id) = &rule.unique_id {
        match p {
            Principal::Aws(a) if glob_match(id, &a.unique_id) => {}
            _ => return false,
        }
    }
    rule.claims.iter().all(|(path, glob)| match p {
        Principal::Oidc(o) => claim_strings(&o.claims, path)
            .iter()
            .any(|v| glob_match(glob, v)),
        Principal::Aws(_) => false,
    })
}

/// The string values at a claim path (a string, or each string of a list).
fn claim_strings(claims: &serde_json::Value, path: &str) -> Vec<String> {
    match oidc::claim(claims, path) {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
            vec![v.to_string()]
        }
        _ => Vec::new(),
    }
}

/// The groups a claim selects; `Err(group)` for one outside the allow list.
fn claim_groups(rule: &UserRule, p: &Principal) -> Result<Vec<String>, String> {
    let (Some(path), Principal::Oidc(o)) = (&rule.db_groups_from_claim, p) else {
        return Ok(Vec::new());
    };
    claim_strings(&o.claims, path)
        .into_iter()
        .map(|g| {
            let g = g.to_lowercase();
            if rule.allowed_db_groups.contains(&g) {
                Ok(g)
            } else {
                Err(g)
            }
        })
        .collect()
}

/// The DbUser of a principal rule: fixed, a template, or the principal's own name.
fn db_user(rule: &UserRule, p: &Principal) -> Result<String, String> {
    let raw = match &rule.db_user {
        Some(t) if t.contains('{') => expand(t, p)?,
        Some(fixed) => return Ok(fixed.clone()),
        None => match p {
            Principal::Aws(a) => a.session_name.clone().unwrap_or_else(|| a.name.clone()),
            Principal::Oidc(o) => o.subject.clone(),
        },
    };
    let name = sanitize_db_user(&raw);
    if name.is_empty() {
        return Err(format!(
            "the principal gives no usable user name from {raw:?}"
        ));
    }
    Ok(name)
}

/// Fills `{session_name}`, `{role_name}`, `{account}`, `{subject}`, `{claim:PATH}`.
fn expand(template: &str, p: &Principal) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {template:?}"))?;
        let field = &rest[open + 1..open + close];
        let value = match (field, p) {
            ("session_name", Principal::Aws(a)) => a.session_name.clone(),
            ("role_name", Principal::Aws(a)) => Some(a.name.clone()),
            ("account", Principal::Aws(a)) => Some(a.account.clone()),
            ("subject", Principal::Oidc(o)) => Some(o.subject.clone()),
            (f, Principal::Oidc(o)) if f.starts_with("claim:") => {
                claim_strings(&o.claims, &f["claim:".len()..])
                    .into_iter()
                    .next()
            }
            _ => None,
        };
        out.push_str(&value.ok_or_else(|| format!("the principal has no {{{field}}}"))?);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A name Redshift takes as a user: lower case, letters, digits and `_ + . @ -` only,
/// starting with a letter, at most 64 characters.
pub fn sanitize_db_user(raw: &str) -> String {
    let mut s: String = raw
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '.' | '@' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().next().is_some_and(|c| !c.is_ascii_alphabetic()) {
        s.insert_str(0, "u_");
    }
    s.truncate(64);
    s
}

/// `*` (any run) and `?` (any one character) wildcards; everything else literal.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests;
