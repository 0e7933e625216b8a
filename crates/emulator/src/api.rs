//! The Redshift actions: version/action routing, IAM permission checks, and the
//! `GetClusterCredentials`, `GetClusterCredentialsWithIAM`, `DescribeClusters`,
//! `DescribeCustomDomainAssociations`, `PauseCluster`, `ResumeCluster` and `RebootCluster`
//! handlers; plus credential minting shared with Serverless.

use std::sync::Arc;

use time::macros::format_description;
use time::{Duration, OffsetDateTime};

use crate::error::ApiError;
use crate::identity::{self, authorize};
use crate::lifecycle::{Action, ClusterStatus};
use crate::provision::{self, Outcome, ProvisionRequest, RoleProvisioner};
use crate::state::State;
use crate::validate::{self, Params, Target};
use crate::{xml, AccessKey, EmulatedCluster, ACCOUNT_ID};

/// API version every request must name.
pub(crate) const API_VERSION: &str = "2012-12-01";

/// How long before `Expiration` the IAM-mapped APIs put `NextRefreshTime` (AWS documents the
/// field as "reserved for future use"; refreshing 5 minutes early is what clients should do).
pub(crate) const REFRESH_AHEAD: Duration = Duration::minutes(5);

/// Routes a signed request to its action and returns the success XML document.
pub(crate) async fn dispatch(
    state: &State,
    key: &AccessKey,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    let action = params.get("Action");
    match params.get("Version") {
        Some(API_VERSION) => {}
        Some(v) => {
            return Err(ApiError::new(
                400,
                "NoSuchVersion",
                format!("The requested version ({v}) of service AmazonRedshift does not exist"),
            ))
        }
        None if action.is_none() => {}
        None => return Err(ApiError::missing_parameter("Version")),
    }
    let result = match action {
        Some("GetClusterCredentials") => {
            get_cluster_credentials(state, key, params, request_id).await
        }
        Some("GetClusterCredentialsWithIAM") => {
            get_cluster_credentials_with_iam(state, key, params, request_id).await
        }
        Some("DescribeClusters") => describe_clusters(state, key, params, request_id),
        Some("DescribeCustomDomainAssociations") => {
            describe_custom_domain_associations(state, key, params, request_id)
        }
        Some("PauseCluster") => change_state(state, key, params, request_id, Action::Pause),
        Some("ResumeCluster") => change_state(state, key, params, request_id, Action::Resume),
        Some("RebootCluster") => change_state(state, key, params, request_id, Action::Reboot),
        Some(other) => Err(ApiError::new(
            400,
            "InvalidAction",
            format!("The action {other} is not valid for this web service."),
        )),
        None => Err(ApiError::new(
            400,
            "MissingAction",
            "The request must contain the parameter Action",
        )),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    tracing::debug!(
        action = ?action.unwrap_or_default(),
        db_user = ?params.get("DbUser").unwrap_or_default(),
        cluster = ?params.get("ClusterIdentifier").unwrap_or_default(),
        custom_domain = ?params.get("CustomDomainName").unwrap_or_default(),
        outcome,
        "Redshift emulator call"
    );
    result
}

fn arn(state: &State, kind: &str, rest: &str) -> String {
    format!(
        "arn:aws:redshift:{}:{ACCOUNT_ID}:{kind}:{rest}",
        state.config.region
    )
}

/// The error AWS gives for a custom domain name with no association.
pub(crate) fn custom_domain_not_found(domain: &str) -> ApiError {
    ApiError::new(
        404,
        "CustomDomainAssociationNotFoundFault",
        format!("Custom domain association for {domain} not found."),
    )
}

/// The cluster a request targets, resolving a custom domain name through its association.
fn resolve_cluster(state: &State, target: &Target) -> Result<String, ApiError> {
    match target {
        Target::Cluster(id) => Ok(id.clone()),
        Target::CustomDomain(d) => state
            .custom_domain(d)
            .map(str::to_owned)
            .ok_or_else(|| custom_domain_not_found(d)),
    }
}

/// Why: a freshly minted database password and the instant it stops working.
pub(crate) struct Minted {
    pub(crate) password: String,
    pub(crate) expiration: OffsetDateTime,
}

/// Now plus `duration_seconds`, truncated to milliseconds so every rendering (XML, JSON,
/// `VALID UNTIL`) names the same instant.
fn expiration_after(duration_seconds: i64) -> OffsetDateTime {
    let t = OffsetDateTime::now_utc() + Duration::seconds(duration_seconds);
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t)
}

/// ISO-8601 with milliseconds, as AWS Query responses carry timestamps.
pub(crate) fn iso8601(t: OffsetDateTime) -> Result<String, ApiError> {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .map_err(|e| ApiError::internal(format!("formatting a timestamp: {e}")))
}

/// Mints a password valid for `duration_seconds` and provisions `preq` (whose `valid_until`
/// is filled in here) through `provisioner`, if the target has one.
pub(crate) async fn mint(
    state: &State,
    provisioner: Option<&Arc<dyn RoleProvisioner>>,
    action: &str,
    target: &str,
    mut preq: ProvisionRequest,
    duration_seconds: i64,
) -> Result<Minted, ApiError> {
    let expiration = expiration_after(duration_seconds);
    preq.valid_until = expiration
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]+00"
        ))
        .map_err(|e| ApiError::internal(format!("formatting expiration: {e}")))?;
    let password = provision::generate_password();
    state.record_issued(&preq.login_role, &password);
    if let Some(p) = provisioner {
        let login_role = preq.login_role.as_str();
        match p.provision(&preq, &password).await {
            Ok(Outcome::Provisioned) => tracing::debug!(
                action,
                db_user = %login_role,
                target,
                outcome = "provisioned",
            ),
            Ok(Outcome::NoBaseRole) => tracing::debug!(
                action,
                db_user = %login_role,
                target,
                outcome = "no such database user; credentials returned, login will fail",
            ),
            Err(e) => {
                tracing::warn!(
                    action,
                    db_user = %login_role,
                    target,
                    error = %e,
                    "provisioning failed",
                );
                return Err(ApiError::internal(
                    "The emulator could not provision the database user.",
                ));
            }
        }
    }
    Ok(Minted {
        password,
        expiration,
    })
}

async fn get_cluster_credentials(
    state: &State,
    key: &AccessKey,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    let req = validate::get_cluster_credentials(params)?;
    let cluster_id = resolve_cluster(state, &req.target)?;
    let user_arn = arn(state, "dbuser", &format!("{cluster_id}/{}", req.db_user));
    authorize(key, "redshift:GetClusterCredentials", &user_arn)?;
    for g in &req.db_groups {
        let group_arn = arn(state, "dbgroup", &format!("{cluster_id}/{g}"));
        authorize(key, "redshift:JoinGroup", &group_arn)?;
    }
    if req.auto_create {
        authorize(key, "redshift:CreateClusterUser", &user_arn)?;
    }
    let entry = state
        .cluster(&cluster_id)
        .ok_or_else(|| ApiError::cluster_not_found(&cluster_id))?;

    let prefix = if req.auto_create { "IAMA:" } else { "IAM:" };
    let login_role = format!("{prefix}{}", req.db_user);
    let preq = ProvisionRequest {
        base_role: Some(req.db_user.clone()),
        login_role: login_role.clone(),
        auto_create: req.auto_create,
        groups: req.db_groups.clone(),
        md5: state.is_md5_user(&req.db_user, &login_role),
        valid_until: String::new(),
    };
    let minted = mint(
        state,
        entry.provisioner.as_ref(),
        "GetClusterCredentials",
        &cluster_id,
        preq,
        req.duration_seconds,
    )
    .await?;

    let body = format!(
        "{}{}{}",
        xml::element("DbUser", &login_role),
        xml::element("Expiration", &iso8601(minted.expiration)?),
        xml::element("DbPassword", &minted.password),
    );
    Ok(xml::success("GetClusterCredentials", &body, request_id))
}

/// The request for an IAM-mapped login (`IAM:NAME` / `IAMR:ROLE`) of the caller: created when
/// missing, groups from the assumed role's tags (others revoked).
pub(crate) fn iam_provision_request(
    state: &State,
    key: &AccessKey,
    action: &str,
) -> Result<ProvisionRequest, ApiError> {
    let login_role = identity::iam_db_user(key, action)?;
    Ok(ProvisionRequest {
        base_role: None,
        md5: state.is_md5_user(&login_role, &login_role),
        login_role,
        auto_create: true,
        groups: identity::iam_groups(state, key),
        valid_until: String::new(),
    })
}

async fn get_cluster_credentials_with_iam(
    state: &State,
    key: &AccessKey,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    const ACTION: &str = "GetClusterCredentialsWithIAM";
    let req = validate::get_cluster_credentials_with_iam(params)?;
    let cluster_id = resolve_cluster(state, &req.target)?;
    let resource = match &req.db_name {
        Some(db) => arn(state, "dbname", &format!("{cluster_id}/{db}")),
        None => arn(state, "dbname", &format!("{cluster_id}/*")),
    };
    authorize(key, "redshift:GetClusterCredentialsWithIAM", &resource)?;
    let entry = state
        .cluster(&cluster_id)
        .ok_or_else(|| ApiError::cluster_not_found(&cluster_id))?;
    let preq = iam_provision_request(state, key, ACTION)?;
    let login_role = preq.login_role.clone();
    let minted = mint(
        state,
        entry.provisioner.as_ref(),
        ACTION,
        &cluster_id,
        preq,
        req.duration_seconds,
    )
    .await?;
    let body = format!(
        "{}{}{}{}",
        xml::element("DbUser", &login_role),
        xml::element("Expiration", &iso8601(minted.expiration)?),
        xml::element("DbPassword", &minted.password),
        xml::element(
            "NextRefreshTime",
            &iso8601(minted.expiration - REFRESH_AHEAD)?
        ),
    );
    Ok(xml::success(ACTION, &body, request_id))
}

fn describe_clusters(
    state: &State,
    key: &AccessKey,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    let wanted = params.get("ClusterIdentifier");
    let resource = match wanted {
        Some(id) => arn(state, "cluster", id),
        None => "*".to_owned(),
    };
    authorize(key, "redshift:DescribeClusters", &resource)?;
    let entries: Vec<_> = match wanted {
        Some(id) => vec![state
            .cluster(id)
            .ok_or_else(|| ApiError::cluster_not_found(id))?],
        None => state.clusters.iter().collect(),
    };
    let clusters: String = entries
        .iter()
        .map(|e| cluster_xml(&e.cluster, e.lifecycle.status()))
        .collect();
    Ok(xml::success(
        "DescribeClusters",
        &format!("<Clusters>{clusters}</Clusters>"),
        request_id,
    ))
}

/// One `<Cluster>` element: identifier, status, availability and endpoint (a paused cluster
/// keeps its endpoint).
fn cluster_xml(c: &EmulatedCluster, status: ClusterStatus) -> String {
    format!(
        "<Cluster>{}{}{}<Endpoint>{}<Port>{}</Port></Endpoint></Cluster>",
        xml::element("ClusterIdentifier", &c.identifier),
        xml::element("ClusterStatus", status.as_str()),
        xml::element("ClusterAvailabilityStatus", status.availability()),
        xml::element("Address", &c.host),
        c.port
    )
}

/// PauseCluster, ResumeCluster, RebootCluster: IAM (`redshift:ACTION` on the cluster ARN),
/// then the state check; the answer is the cluster in its new, transient state.
fn change_state(
    state: &State,
    key: &AccessKey,
    params: &Params,
    request_id: &str,
    action: Action,
) -> Result<String, ApiError> {
    let op = action.operation();
    let id = params
        .get("ClusterIdentifier")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::missing_parameter("ClusterIdentifier"))?;
    authorize(key, &format!("redshift:{op}"), &arn(state, "cluster", id))?;
    let entry = state
        .cluster(id)
        .ok_or_else(|| ApiError::cluster_not_found(id))?;
    let status = entry
        .lifecycle
        .begin(action, state.resume_delay(), state.stop.clone())?;
    Ok(xml::success(
        op,
        &cluster_xml(&entry.cluster, status),
        request_id,
    ))
}

/// One `Association` per configured custom domain whose target is not a Serverless workgroup.
fn describe_custom_domain_associations(
    state: &State,
    key: &AccessKey,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    const ACTION: &str = "DescribeCustomDomainAssociations";
    authorize(key, "redshift:DescribeCustomDomainAssociations", "*")?;
    let wanted = params.get("CustomDomainName");
    let wanted_cert = params.get("CustomDomainCertificateArn");
    let cert_arn = |domain: &str| {
        format!(
            "arn:aws:acm:{}:{ACCOUNT_ID}:certificate/{}",
            state.config.region,
            crate::state::unique_id("emulator-", domain).to_ascii_lowercase()
        )
    };
    let expiry = iso8601(OffsetDateTime::now_utc() + Duration::days(365))?;
    let mut associations = String::new();
    for (domain, id) in &state.config.custom_domains {
        if state.workgroup(id).is_some()
            || wanted.is_some_and(|w| !w.eq_ignore_ascii_case(domain))
            || wanted_cert.is_some_and(|c| c != cert_arn(domain))
        {
            continue;
        }
        associations.push_str(&format!(
            "<Association>{}{}<CertificateAssociations><CertificateAssociation>{}{}\
             </CertificateAssociation></CertificateAssociations></Association>",
            xml::element("CustomDomainCertificateArn", &cert_arn(domain)),
            xml::element("CustomDomainCertificateExpiryDate", &expiry),
            xml::element("CustomDomainName", domain),
            xml::element("ClusterIdentifier", id),
        ));
    }
    if associations.is_empty() && (wanted.is_some() || wanted_cert.is_some()) {
        return Err(custom_domain_not_found(
            wanted.or(wanted_cert).unwrap_or_default(),
        ));
    }
    Ok(xml::success(
        ACTION,
        &format!("<Associations>{associations}</Associations>"),
        request_id,
    ))
}
