//! AWS Query parameter parsing and the GetClusterCredentials(WithIAM) parameter rules.

use crate::error::ApiError;

/// Why: AWS Query parameters merged from the query string and the form body (first value wins),
/// so actions look parameters up by name without caring where they came from.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Query-string parameters first, then the `application/x-www-form-urlencoded` body's.
    pub(crate) fn parse(query: Option<&str>, form_body: Option<&[u8]>) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        if let Some(b) = form_body {
            pairs.extend(form_urlencoded::parse(b).into_owned());
        }
        Params { pairs }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Why: where the caller wants credentials for (a cluster or a custom domain name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Cluster(String),
    CustomDomain(String),
}

/// Why: a GetClusterCredentials request after AWS's parameter rules have been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialsRequest {
    pub(crate) db_user: String,
    pub(crate) db_name: Option<String>,
    pub(crate) target: Target,
    pub(crate) duration_seconds: i64,
    pub(crate) auto_create: bool,
    pub(crate) db_groups: Vec<String>,
}

pub(crate) const MIN_DURATION: i64 = 900;
pub(crate) const MAX_DURATION: i64 = 3600;

/// Parses and validates GetClusterCredentials parameters as the API reference describes.
pub(crate) fn get_cluster_credentials(p: &Params) -> Result<CredentialsRequest, ApiError> {
    let db_user = p
        .get("DbUser")
        .ok_or_else(|| ApiError::missing_parameter("DbUser"))?;
    validate_name("DbUser", db_user, false)?;

    let db_name = p.get("DbName");
    if let Some(n) = db_name {
        validate_name("DbName", n, false)?;
    }

    let duration_seconds = duration(p)?;

    let auto_create = match p.get("AutoCreate") {
        None => false,
        Some(s) if s.eq_ignore_ascii_case("true") => true,
        Some(s) if s.eq_ignore_ascii_case("false") => false,
        Some(s) => {
            return Err(ApiError::invalid_parameter(format!(
                "AutoCreate must be true or false, got '{s}'."
            )))
        }
    };

    let db_groups = db_groups(p)?;

    let target = target(p)?;

    Ok(CredentialsRequest {
        db_user: db_user.to_owned(),
        db_name: db_name.map(str::to_owned),
        target,
        duration_seconds,
        auto_create,
        db_groups,
    })
}

/// Why: a GetClusterCredentialsWithIAM request after AWS's parameter rules have been applied
/// (the DbUser comes from the caller identity, not the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IamCredentialsRequest {
    pub(crate) db_name: Option<String>,
    pub(crate) target: Target,
    pub(crate) duration_seconds: i64,
}

/// Parses and validates GetClusterCredentialsWithIAM parameters.
pub(crate) fn get_cluster_credentials_with_iam(
    p: &Params,
) -> Result<IamCredentialsRequest, ApiError> {
    let db_name = p.get("DbName");
    if let Some(n) = db_name {
        validate_name("DbName", n, false)?;
    }
    Ok(IamCredentialsRequest {
        db_name: db_name.map(str::to_owned),
        duration_seconds: duration(p)?,
        target: target(p)?,
    })
}

/// `DurationSeconds`: 900..3600, default 900.
fn duration(p: &Params) -> Result<i64, ApiError> {
    let Some(s) = p.get("DurationSeconds") else {
        return Ok(MIN_DURATION);
    };
    let d: i64 = s.trim().parse().map_err(|_| {
        ApiError::invalid_parameter(format!("DurationSeconds must be an integer, got '{s}'."))
    })?;
    if !(MIN_DURATION..=MAX_DURATION).contains(&d) {
        return Err(ApiError::invalid_parameter(format!(
            "DurationSeconds must be between {MIN_DURATION} and {MAX_DURATION} seconds, got {d}."
        )));
    }
    Ok(d)
}

/// `CustomDomainName` wins over `ClusterIdentifier`; one of them is required.
fn target(p: &Params) -> Result<Target, ApiError> {
    match (p.get("ClusterIdentifier"), p.get("CustomDomainName")) {
        (_, Some(domain)) => Ok(Target::CustomDomain(domain.to_owned())),
        (Some(id), None) => Ok(Target::Cluster(id.to_owned())),
        (None, None) => Err(ApiError::invalid_parameter(
            "Either ClusterIdentifier or CustomDomainName must be specified.",
        )),
    }
}

/// Collects `DbGroups.DbGroup.N` (N from 1) in index order, validated and de-duplicated.
fn db_groups(p: &Params) -> Result<Vec<String>, ApiError> {
    let mut indexed: Vec<(u32, &str)> = Vec::new();
    for (k, v) in p.iter() {
        if let Some(idx) = k.strip_prefix("DbGroups.DbGroup.") {
            let n = idx.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiError::invalid_parameter(format!(
                    "Invalid list index in parameter {k}: indexes start at 1."
                ))
            })?;
            indexed.push((n, v));
        } else if k == "DbGroups" && !v.is_empty() {
            return Err(ApiError::invalid_parameter(
                "DbGroups must be given as DbGroups.DbGroup.N parameters.",
            ));
        }
    }
    indexed.sort_by_key(|(n, _)| *n);
    let mut groups: Vec<String> = Vec::new();
    for (_, g) in indexed {
        validate_name("DbGroup", g, true)?;
        if !groups.iter().any(|x| x == g) {
            groups.push(g.to_owned());
        }
    }
    Ok(groups)
}

/// Applies the DbUser/DbName/DbGroup name rules; `lowercase_only` for group names.
pub(crate) fn validate_name(kind: &str, value: &str, lowercase_only: bool) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::invalid_parameter(format!(
            "{kind} '{value}' is not valid: {why}"
        )))
    };
    let len = value.chars().count();
    if !(1..=64).contains(&len) {
        return bad("must be 1 to 64 characters long.");
    }
    if value.contains(':') || value.contains('/') {
        return bad("must not contain a colon (:) or slash (/).");
    }
    if !value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
    {
        return bad("the first character must be a letter.");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '.' | '@' | '-');
    if !value.chars().all(allowed) {
        return bad(
            "must contain only letters, numbers, underscore, plus sign, period (dot), \
             at symbol (@), or hyphen.",
        );
    }
    if lowercase_only && value.chars().any(|c| c.is_ascii_uppercase()) {
        return bad("must contain only lowercase letters.");
    }
    if value.eq_ignore_ascii_case("public") {
        return bad("the name PUBLIC is reserved.");
    }
    if is_reserved_word(value) {
        return bad("it is a reserved word.");
    }
    Ok(())
}

/// Whether `word` is an Amazon Redshift reserved word (case-insensitive).
pub(crate) fn is_reserved_word(word: &str) -> bool {
    let upper = word.to_ascii_uppercase();
    RESERVED_WORDS.binary_search(&upper.as_str()).is_ok()
}

/// Amazon Redshift reserved words (Database Developer Guide, "Reserved words"), sorted.
const RESERVED_WORDS: &[&str] = &[
    "AES128",
    "AES256",
    "ALL",
    "ALLOWOVERWRITE",
    "ANALYSE",
    "ANALYZE",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "AUTHORIZATION",
    "AZ64",
    "BACKUP",
    "BETWEEN",
    "BINARY",
    "BLANKSASNULL",
    "BOTH",
    "BYTEDICT",
    "BZIP2",
    "CASE",
    "CAST",
    "CHECK",
    "COLLATE",
    "COLUMN",
    "CONSTRAINT",
    "CREATE",
    "CREDENTIALS",
    "CROSS",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "CURRENT_USER_ID",
    "DEFAULT",
    "DEFERRABLE",
    "DEFLATE",
    "DEFRAG",
    "DELTA",
    "DELTA32K",
    "DESC",
    "DISABLE",
    "DISTINCT",
    "DO",
    "ELSE",
    "EMPTYASNULL",
    "ENABLE",
    "ENCODE",
    "ENCRYPT",
    "ENCRYPTION",
    "END",
    "EXCEPT",
    "EXPLICIT",
    "FALSE",
    "FOR",
    "FOREIGN",
    "FREEZE",
    "FROM",
    "FULL",
    "GLOBALDICT256",
    "GLOBALDICT64K",
    "GRANT",
    "GROUP",
    "GZIP",
    "HAVING",
    "IDENTITY",
    "IGNORE",
    "ILIKE",
    "IN",
    "INITIALLY",
    "INNER",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IS",
    "ISNULL",
    "JOIN",
    "LANGUAGE",
    "LEADING",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "LUN",
    "LUNS",
    "LZO",
    "LZOP",
    "MINUS",
    "MOSTLY16",
    "MOSTLY32",
    "MOSTLY8",
    "NATURAL",
    "NEW",
    "NOT",
    "NOTNULL",
    "NULL",
    "NULLS",
    "OFF",
    "OFFLINE",
    "OFFSET",
    "OID",
    "OLD",
    "ON",
    "ONLY",
    "OPEN",
    "OR",
    "ORDER",
    "OUTER",
    "OVERLAPS",
    "PARALLEL",
    "PARTITION",
    "PERCENT",
    "PERMISSIONS",
    "PIVOT",
    "PLACING",
    "PRIMARY",
    "QUALIFY",
    "RAW",
    "READRATIO",
    "RECOVER",
    "REFERENCES",
    "REJECTLOG",
    "RESORT",
    "RESPECT",
    "RESTORE",
    "RIGHT",
    "SELECT",
    "SESSION_USER",
    "SIMILAR",
    "SNAPSHOT",
    "SOME",
    "SYSDATE",
    "SYSTEM",
    "TABLE",
    "TAG",
    "TDES",
    "TEXT255",
    "TEXT32K",
    "THEN",
    "TIMESTAMP",
    "TO",
    "TOP",
    "TRAILING",
    "TRUE",
    "TRUNCATECOLUMNS",
    "UNION",
    "UNIQUE",
    "UNNEST",
    "UNPIVOT",
    "USER",
    "USING",
    "VERBOSE",
    "WALLET",
    "WHEN",
    "WHERE",
    "WITH",
    "WITHOUT",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &str) -> Params {
        Params::parse(None, Some(s.as_bytes()))
    }

    /// Checks every `(case, form body, code, message fragment)` row against `parse`.
    fn expect_errors<T: std::fmt::Debug>(
        parse: fn(&Params) -> Result<T, ApiError>,
        table: &[(&str, &str, &str, &str)],
    ) {
        let mut wrong = Vec::new();
        for (case, body, code, fragment) in table {
            match parse(&params(body)) {
                Err(e) if e.code == *code && e.message.contains(fragment) => {}
                other => wrong.push(format!(
                    "{case} ({body}): expected {code} '{fragment}', got {other:?}"
                )),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn reserved_words_are_sorted_for_binary_search() {
        assert!(RESERVED_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn reserved_words_match_case_insensitively() {
        for (word, reserved) in [("select", true), ("Current_User", true), ("alice", false)] {
            assert_eq!(is_reserved_word(word), reserved, "{word}");
        }
    }

    #[test]
    fn get_cluster_credentials_parses_every_parameter_and_sorts_and_dedups_groups() {
        let r = get_cluster_credentials(&params(
            "DbUser=alice&DbName=dev&ClusterIdentifier=c1&DurationSeconds=3600&AutoCreate=true\
             &DbGroups.DbGroup.2=beta&DbGroups.DbGroup.1=alpha&DbGroups.DbGroup.3=alpha",
        ))
        .unwrap();
        assert_eq!(
            r,
            CredentialsRequest {
                db_user: "alice".into(),
                db_name: Some("dev".into()),
                target: Target::Cluster("c1".into()),
                duration_seconds: 3600,
                auto_create: true,
                db_groups: vec!["alpha".into(), "beta".into()],
            }
        );
    }

    #[test]
    fn get_cluster_credentials_decodes_the_query_string_and_applies_defaults() {
        let r = get_cluster_credentials(&Params::parse(
            Some("DbUser=Bob.x%40corp&ClusterIdentifier=c1&DbGroups="),
            None,
        ))
        .unwrap();
        assert_eq!(r.db_user, "Bob.x@corp");
        assert_eq!(r.duration_seconds, 900);
        assert!(!r.auto_create);
        assert!(r.db_groups.is_empty());
    }

    #[test]
    fn get_cluster_credentials_targets_a_custom_domain_name() {
        let r = get_cluster_credentials(&params("DbUser=alice&CustomDomainName=db.example.com"))
            .unwrap();
        assert_eq!(r.target, Target::CustomDomain("db.example.com".into()));
    }

    #[test]
    fn get_cluster_credentials_accepts_a_64_character_db_user() {
        let body = format!("DbUser=a{}&ClusterIdentifier=c", "b".repeat(63));
        assert!(get_cluster_credentials(&params(&body)).is_ok());
    }

    #[test]
    fn get_cluster_credentials_rejects_invalid_parameters() {
        let long_user = format!("DbUser=a{}&ClusterIdentifier=c", "b".repeat(64));
        const INVALID: &str = "InvalidParameterValue";
        expect_errors(
            get_cluster_credentials,
            &[
                (
                    "missing DbUser",
                    "ClusterIdentifier=c1",
                    "MissingParameter",
                    "DbUser",
                ),
                (
                    "no cluster or custom domain",
                    "DbUser=alice",
                    INVALID,
                    "Either ClusterIdentifier or CustomDomainName",
                ),
                (
                    "empty DbUser",
                    "DbUser=&ClusterIdentifier=c",
                    INVALID,
                    "1 to 64 characters",
                ),
                (
                    "DbUser of 65 characters",
                    &long_user,
                    INVALID,
                    "1 to 64 characters",
                ),
                (
                    "DbUser starting with a digit",
                    "DbUser=1alice&ClusterIdentifier=c",
                    INVALID,
                    "first character must be a letter",
                ),
                (
                    "DbUser with a colon",
                    "DbUser=a:b&ClusterIdentifier=c",
                    INVALID,
                    "DbUser 'a:b' is not valid: must not contain a colon (:) or slash (/).",
                ),
                (
                    "DbUser with a slash",
                    "DbUser=a/b&ClusterIdentifier=c",
                    INVALID,
                    "colon (:) or slash (/)",
                ),
                (
                    "DbUser with a space",
                    "DbUser=a%20b&ClusterIdentifier=c",
                    INVALID,
                    "must contain only letters",
                ),
                (
                    "DbUser public",
                    "DbUser=public&ClusterIdentifier=c",
                    INVALID,
                    "PUBLIC is reserved",
                ),
                (
                    "DbUser PUBLIC",
                    "DbUser=PUBLIC&ClusterIdentifier=c",
                    INVALID,
                    "PUBLIC is reserved",
                ),
                (
                    "DbUser reserved word",
                    "DbUser=select&ClusterIdentifier=c",
                    INVALID,
                    "reserved word",
                ),
                (
                    "DbName reserved word",
                    "DbUser=alice&DbName=user&ClusterIdentifier=c",
                    INVALID,
                    "DbName 'user'",
                ),
                (
                    "DbName starting with a digit",
                    "DbUser=alice&DbName=9db&ClusterIdentifier=c",
                    INVALID,
                    "DbName '9db'",
                ),
                (
                    "DurationSeconds 899",
                    "DbUser=alice&ClusterIdentifier=c&DurationSeconds=899",
                    INVALID,
                    "between 900 and 3600",
                ),
                (
                    "DurationSeconds 3601",
                    "DbUser=alice&ClusterIdentifier=c&DurationSeconds=3601",
                    INVALID,
                    "between 900 and 3600",
                ),
                (
                    "DurationSeconds not a number",
                    "DbUser=alice&ClusterIdentifier=c&DurationSeconds=abc",
                    INVALID,
                    "must be an integer",
                ),
                (
                    "AutoCreate not a boolean",
                    "DbUser=alice&ClusterIdentifier=c&AutoCreate=yes",
                    INVALID,
                    "AutoCreate must be true or false",
                ),
                (
                    "DbGroup with capitals",
                    "DbUser=alice&ClusterIdentifier=c&DbGroups.DbGroup.1=Admins",
                    INVALID,
                    "only lowercase",
                ),
                (
                    "DbGroup reserved word",
                    "DbUser=alice&ClusterIdentifier=c&DbGroups.DbGroup.1=group",
                    INVALID,
                    "reserved word",
                ),
                (
                    "DbGroup index 0",
                    "DbUser=alice&ClusterIdentifier=c&DbGroups.DbGroup.0=a",
                    INVALID,
                    "indexes start at 1",
                ),
                (
                    "DbGroup index not a number",
                    "DbUser=alice&ClusterIdentifier=c&DbGroups.DbGroup.x=a",
                    INVALID,
                    "DbGroups.DbGroup.x",
                ),
                (
                    "DbGroups without an index",
                    "DbUser=alice&ClusterIdentifier=c&DbGroups=a",
                    INVALID,
                    "DbGroups.DbGroup.N",
                ),
            ],
        );
    }

    #[test]
    fn get_cluster_credentials_with_iam_defaults_to_900_seconds() {
        let r =
            get_cluster_credentials_with_iam(&params("ClusterIdentifier=c1&DbName=dev")).unwrap();
        assert_eq!(
            r,
            IamCredentialsRequest {
                db_name: Some("dev".into()),
                target: Target::Cluster("c1".into()),
                duration_seconds: 900,
            }
        );
    }

    #[test]
    fn get_cluster_credentials_with_iam_rejects_invalid_parameters() {
        const INVALID: &str = "InvalidParameterValue";
        expect_errors(
            get_cluster_credentials_with_iam,
            &[
                (
                    "no cluster or custom domain",
                    "DbName=dev",
                    INVALID,
                    "Either ClusterIdentifier",
                ),
                (
                    "DurationSeconds 3601",
                    "ClusterIdentifier=c1&DurationSeconds=3601",
                    INVALID,
                    "between 900 and 3600",
                ),
                (
                    "DbName reserved word",
                    "ClusterIdentifier=c1&DbName=select",
                    INVALID,
                    "reserved word",
                ),
            ],
        );
    }
}
