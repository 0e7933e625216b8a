//! Who is who: a client's name or verified principal mapped to a Redshift identity
//! (`mapping`), and the login policy (`login`: route, map, default database, credential
//! request, startup parameters; pure), with the startup parameters stock drivers send that
//! Redshift refuses (`compat`).
//!
//! May import: `base`, `config`, `client`, `aws`, `cluster`, `pool` (its session settings).

pub mod compat;
pub mod login;
pub mod mapping;
