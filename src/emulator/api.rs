//! The Redshift actions: version/action routing, IAM permission checks, and the
//! `GetClusterCredentials` and `DescribeClusters` handlers.

use time::macros::format_description;
use time::{Duration, OffsetDateTime};

use crate::emulator::error::ApiError;
use crate::emulator::provision::{self, Outcome, ProvisionRequest};
use crate::emulator::state::State;
use crate::emulator::validate::{self, Params, Target};
use crate::emulator::{xml, AccessKey};

/// API version every request must name.
pub(crate) const API_VERSION: &str = "2012-12-01";
/// Account id used in emulated ARNs.
const ACCOUNT_ID: &str = "123456789012";

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
        Some("DescribeClusters") => describe_clusters(state, key, params, request_id),
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
        outcome,
        "Redshift emulator call"
    );
    result
}

/// Denies `action` on `resource` if the key's policy says so.
fn authorize(key: &AccessKey, action: &str, resource: &str) -> Result<(), ApiError> {
    let denied = key.denied_actions.iter().any(|d| {
        d == "*" || d.eq_ignore_ascii_case("redshift:*") || d.eq_ignore_ascii_case(action)
    });
    if denied {
        return Err(ApiError::new(
            403,
            "AccessDenied",
            format!(
                "User: arn:aws:iam::{ACCOUNT_ID}:user/emulator is not authorized to perform: \
                 {action} on resource: {resource}"
            ),
        ));
    }
    Ok(())
}

fn arn(state: &State, kind: &str, rest: &str) -> String {
    format!(
        "arn:aws:redshift:{}:{ACCOUNT_ID}:{kind}:{rest}",
        state.config.region
    )
}

async fn get_cluster_credentials(
    state: &State,
    key: &AccessKey,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    let req = validate::get_cluster_credentials(params)?;
    let cluster_id = match &req.target {
        Target::Cluster(id) => id.clone(),
        Target::CustomDomain(d) => {
            return Err(ApiError::new(
                400,
                "UnsupportedOperation",
                format!("Custom domain names are not supported by this emulator ({d})."),
            ))
        }
    };
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
    let now = OffsetDateTime::now_utc();
    let expiration = now + Duration::seconds(req.duration_seconds);
    // Millisecond precision, so the XML and VALID UNTIL name the same instant.
    let expiration = expiration
        .replace_nanosecond(expiration.millisecond() as u32 * 1_000_000)
        .unwrap_or(expiration);
    let expiration_xml = expiration
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .map_err(|e| ApiError::internal(format!("formatting expiration: {e}")))?;
    let valid_until = expiration
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]+00"
        ))
        .map_err(|e| ApiError::internal(format!("formatting expiration: {e}")))?;

    let password = provision::generate_password();
    state.record_issued(&password);
    let preq = ProvisionRequest {
        base_role: req.db_user.clone(),
        login_role: login_role.clone(),
        auto_create: req.auto_create,
        groups: req.db_groups.clone(),
        md5: state.is_md5_user(&req.db_user, &login_role),
        valid_until,
    };
    if let Some(p) = &entry.provisioner {
        match p.provision(&preq, &password).await {
            Ok(Outcome::Provisioned) => tracing::debug!(
                action = "GetClusterCredentials",
                db_user = %login_role,
                cluster = %cluster_id,
                outcome = "provisioned",
            ),
            Ok(Outcome::NoBaseRole) => tracing::debug!(
                action = "GetClusterCredentials",
                db_user = %login_role,
                cluster = %cluster_id,
                outcome = "no such database user; credentials returned, login will fail",
            ),
            Err(e) => {
                tracing::warn!(
                    action = "GetClusterCredentials",
                    db_user = %login_role,
                    cluster = %cluster_id,
                    error = %e,
                    "provisioning failed",
                );
                return Err(ApiError::internal(
                    "The emulator could not provision the database user.",
                ));
            }
        }
    }

    let body = format!(
        "{}{}{}",
        xml::element("DbUser", &login_role),
        xml::element("Expiration", &expiration_xml),
        xml::element("DbPassword", &password),
    );
    Ok(xml::success("GetClusterCredentials", &body, request_id))
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
    let mut clusters = String::new();
    for e in entries {
        let c = &e.cluster;
        clusters.push_str(&format!(
            "<Cluster>{}<ClusterStatus>available</ClusterStatus>\
             <ClusterAvailabilityStatus>Available</ClusterAvailabilityStatus>\
             <Endpoint>{}<Port>{}</Port></Endpoint></Cluster>",
            xml::element("ClusterIdentifier", &c.identifier),
            xml::element("Address", &c.host),
            c.port
        ));
    }
    Ok(xml::success(
        "DescribeClusters",
        &format!("<Clusters>{clusters}</Clusters>"),
        request_id,
    ))
}
