//! The AWS side: the credential API calls (GetClusterCredentials, …WithIAM, Serverless
//! GetCredentials, DescribeClusters, ResumeCluster), how their errors are classified, and the
//! credential cache with single flight.
//!
//! May import: `base`, `config`.

pub mod cache;
pub mod credentials;
pub mod error;
